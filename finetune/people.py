"""Recipe `people`: training conversations whose customers write like people, in the agent graph's shape.

The customers of `synth.py` talked like the task specs ("Return #W6619432 via paypal_3738584: Yoga Mat").
Here they talk like the dev replays: identity and the whole request in the first message, several requests
at once, items named in words ("the mechanical keyboard I got"), new options in words derived from the
variant ("the same one but with clicky switches", "a bigger one"), payment in words ("back to my PayPal"),
a change of mind mid-message ("Actually, only the desk lamp"), policy questions, out-of-policy asks, typos.
Order ids appear only where a person would know them (~15%) or where the words alone would be ambiguous.

Two sources, one engine:
- the 400 training task specs of `../shared/data/retail/tasks_train.json` (index % 5 != 0; the held-out split
  takes the others) over that folder's mock database, with their gold write actions, plus non-write
  scenarios (status, policy, hand-off, out-of-policy) over its users;
- the demo store (`agent.store.seed.generate_demo_data`) with scenarios drawn from its users and orders.

The path follows the graph (agent/graph.py, agent/choices.py) exactly: identify, `get_user_details`, the
stated order ids then the profile's orders in order until every order needed is found, product details
before a swap, the proposal (the graph lists it: GRAPH steps), the yes (the graph executes: GRAPH), the next
proposal or the final reply (the graph's `write_done` text). Every target is checked against
`agent.choices.derive` while generating (the values the graph would allow at that step); a conversation
with a target the graph would refuse is drawn again.

Dev replays are kept out: task specs whose gold writes equal (or share a write with) a dev replay's are
dropped, and a first message too close to a dev replay's first message (token Jaccard > 0.8) is drawn again.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import choices, prompts
from agent.chat_model import ToolCall
from agent.confirmation import is_explicit_yes
from agent.tool_specs import WRITE_TOOLS
from finetune.dataset import GRAPH_STEP as GRAPH
from finetune.synth import (
    HELDOUT_STORE_SEED,
    TRAIN_STORE_SEED,
    Action,
    Builder,
    Split,
    StoreTools,
    load_retail,
    order_summary,
    pick,
    propose_write,
    task_specs,
)
from finetune.synth import _record as synth_record

RECIPE = "people"
NEAR_DUPLICATE = 0.8  # token Jaccard above which a first message counts as a copy of a dev replay's
STATED_ORDER_SHARE = 0.12  # customers who give the order ids although their words would do
TASK_SHARE, RETAIL_EXTRA_SHARE = 0.55, 0.15  # of n when the retail folder is there; the rest is demo store
CANNOT_CANCEL = (
    "Order {order_id} is {status}, so it can't be cancelled any more. I can help you return it once it is "
    "delivered."
)
CANNOT_CANCEL_DELIVERED = (
    "Order {order_id} is delivered, so it can't be cancelled. I can start a return for it instead."
)
CANNOT_RETURN_PENDING = (
    "Order {order_id} is pending, so it can't be returned yet. I can cancel it or change it instead."
)
CANNOT_RETURN_PROCESSED = (
    "Order {order_id} is processed, so it can't be returned yet. I can help you return it once it is "
    "delivered."
)
NOT_CONFIRMED_REPLY = prompts.NOT_CONFIRMED + " Anything else I can help with?"
CLOSE_REPLY = "You're welcome, have a nice day!"
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")

# ---------------------------------------------------------------------------------------------------------
# Phrasings. Every list is split by index like synth.py's `pick`: training never sees every fifth entry.

GREETINGS = [
    "Hi! ",
    "Hello, ",
    "hey ",
    "Good morning. ",
    "",
    "Hi there, ",
    "Hello there. ",
    "hi, ",
    "",
    "Good afternoon! ",
    "Hey there. ",
    "Morning, ",
    "",
    "Hiya, ",
    "Good evening, ",
]
CLOSINGS = [
    " Thanks!",
    " Thank you.",
    " Can you help?",
    "",
    " Thanks in advance!",
    " Appreciate it.",
    " Could you sort that out for me?",
    "",
    " thx",
    " Thanks so much.",
    " Let me know, thanks.",
    "",
    " Cheers.",
    " Would be great if you can help.",
    " Thank you very much!",
]
EMAIL_IDENTITY = [
    "My email is {email}.",
    "The email on my account is {email}.",
    "You can find me under {email}.",
    "My account is under {email}.",
    "email: {email}",
    "I'm {email} on your site.",
    "My login email is {email}.",
    "It's {email} for the account.",
    "Account email {email}.",
    "I signed up with {email}.",
    "My email address is {email}.",
    "you should have me as {email}.",
    "The account is {email}.",
    "I use {email} for my account.",
    "Email's {email}.",
]
# Every name phrasing has a cue ("I'm", "my name is", "this is", "name's") so the graph finds the name even
# when the message is written in lower case.
NAME_IDENTITY = [
    "I'm {first} {last}, zip {zip}.",
    "My name is {first} {last} and I live in {zip}.",
    "This is {first} {last}, my zip code is {zip}.",
    "Name's {first} {last}, zip code {zip}.",
    "I am {first} {last} from zip {zip}.",
    "My name is {first} {last}, zip {zip}.",
    "This is {first} {last} (zip {zip}).",
    "I'm {first} {last} and my zip is {zip}.",
    "my name is {first} {last}, postcode {zip}",
    "It's {first} {last} here, zip {zip}.",
    "I'm {first} {last}. Zip: {zip}.",
    "This is {first} {last}, living in {zip}.",
    "My name is {first} {last}; zip code {zip}.",
    "i am {first} {last}, {zip}",
    "Name's {first} {last}, I'm in {zip}.",
]
NO_EMAIL = [
    " I don't remember which email I used.",
    " Not sure which email is on the account.",
    " I forgot my email.",
    " (can't recall the email, sorry)",
    " I don't know my email offhand.",
    " I don't have my email at hand.",
    " No idea which email I signed up with.",
    " I can't find my email right now.",
    " The email I don't remember.",
    " I don't remember my login email.",
]
USER_ID_MENTION = [
    " My user id is {uid}.",
    " (user id {uid}, if that helps)",
    " My username is {uid}.",
    " I think my user id is {uid}.",
    " Account id: {uid}.",
    " My user id should be {uid}.",
    " user id {uid}",
    " My id is {uid}.",
    " (my id is {uid})",
    " The user id is {uid}.",
]
TWO_EMAILS = [
    "I have two emails, {a} and {b}, not sure which one is on the account.",
    "It's either {a} or {b}, I use both.",
    "My email is {a} or maybe {b}.",
    "I might have used {a}, or {b}.",
    "Try {a}; if that doesn't work, {b}.",
    "I've got two addresses: {a} and {b}. One of them is the account.",
    "email is {a}, or possibly {b}",
    "Could be {a} or {b}, I don't remember which.",
    "I use {a} and {b}, not sure which one I signed up with.",
    "Either {a} or {b}.",
]
GIVE_EMAIL = [
    "sure, it's {email}",
    "{email}",
    "My email is {email}.",
    "it's {email}",
    "Oh right, {email}.",
    "The account email is {email}",
    "ok: {email}",
    "Sure thing, {email}",
    "email {email}",
    "You'll find me under {email}.",
]
GIVE_NAME = [
    "I'm {first} {last}, zip {zip}",
    "My name is {first} {last}, zip code {zip}.",
    "sure, this is {first} {last}, {zip}",
    "Name's {first} {last}, zip {zip}.",
    "I am {first} {last} and my zip is {zip}",
    "It's {first} {last} here, {zip}.",
    "my name is {first} {last} zip {zip}",
    "This is {first} {last}. Zip {zip}.",
    "i'm {first} {last}, postcode {zip}",
    "Sure, I'm {first} {last}, zip code is {zip}.",
]
CORRECT_EMAIL = [
    "sorry, typo. it's {email}",
    "Oops, I meant {email}.",
    "Try {email} then.",
    "my bad, it's {email}",
    "Hmm, maybe {email}?",
    "Sorry, the right one is {email}.",
    "ah wait, {email}",
    "It should be {email}.",
    "Let me try again: {email}",
    "Oh, it's {email}, sorry.",
]
CORRECT_WITH_NAME = [
    "Hmm. Then try my name: I'm {first} {last}, zip {zip}.",
    "ok, my name is {first} {last} and my zip is {zip}",
    "Not sure then. I'm {first} {last}, {zip}.",
    "Then use my name, this is {first} {last}, zip code {zip}.",
    "Maybe by name? I am {first} {last}, zip {zip}.",
    "Name's {first} {last}, zip {zip}, try that.",
    "ugh. i'm {first} {last}, {zip}",
    "Try my name instead: my name is {first} {last}, zip {zip}.",
    "I'm {first} {last} from {zip}, does that work?",
    "This is {first} {last}, zip {zip}.",
]
YES = [
    "Yes, go ahead.",
    "yes please",
    "Yep, that's right, go ahead.",
    "Yes, confirm.",
    "yes do it",
    "Yes, that's correct.",
    "yeah go ahead",
    "Yes please proceed.",
    "yes, confirmed",
    "Yup, do it.",
    "Yes, that's what I want.",
    "yes thanks",
    "Yes, please do.",
    "yep",
    "Yes, all good, proceed.",
]
NO = [
    "No, leave it as it is.",
    "hmm no, don't do that",
    "No thanks, I changed my mind.",
    "nope, forget it",
    "No. Please don't change anything.",
    "no, I'll keep it after all",
    "Hold on, no. Leave it.",
    "No, never mind.",
    "I changed my mind, don't do it.",
    "no thanks",
]
THANKS = [
    "thanks, that's all",
    "Great, thank you!",
    "ok thanks bye",
    "Thanks for checking.",
    "cool, thx",
    "Thank you, that's everything.",
    "perfect, thanks",
    "Got it, thanks!",
    "ok great, bye",
    "Thanks a lot.",
]
ALSO = ["Also, ", "And ", "", "Plus ", "Oh and ", "Another thing: ", "Second, ", "", "Then ", "And also "]
ITEM_FORMS = ["the {n}", "my {n}", "the {n} I got", "the {n}", "my {n}"]
ITEM_FORMS_PENDING = ["the {n}", "my {n}", "the {n} I ordered", "the {n}", "the {n} I just bought"]

RETURN = [
    "I'd like to return {items}{ref}{pay}.",
    "I want to send back {items}{ref}{pay}.",
    "Can I return {items}{ref}?{pay_s}",
    "{Items} didn't work out, so I want to return {it}{ref}{pay}.",
    "please return {items}{ref}{pay}",
    "I need to return {items}{ref}{pay}.",
    "Could you set up a return for {items}{ref}?{pay_s}",
    "I'm not happy with {items}{ref} and want to return {it}{pay}.",
    "return {items}{ref} pls{pay}",
    "I'd like a refund for {items}{ref}, I'm sending {it} back{pay}.",
    "I want to return {items}{ref}{pay}.",
    "{Items}{ref} isn't for me, I'd like to return {it}{pay}.",
    "Is it possible to return {items}{ref}?{pay_s}",
    "I wanna return {items}{ref}{pay}",
    "I'd like to give back {items}{ref}{pay}.",
]
EXCHANGE = [
    "I'd like to exchange {swaps}{ref}{pay}.",
    "Can I swap {swaps}{ref}?{pay_s}",
    "I want to exchange {swaps}{ref}{pay}.",
    "please exchange {swaps}{ref}{pay}",
    "Could you exchange {swaps}{ref}?{pay_s}",
    "I received {items}{ref} but I'd prefer to exchange {swaps_it}{pay}.",
    "I need to exchange {swaps}{ref}{pay}.",
    "exchange {swaps}{ref} please{pay}",
    "I'd like to trade {swaps}{ref}{pay}.",
    "Is it possible to exchange {swaps}{ref}?{pay_s}",
    "I wish to exchange {swaps}{ref}{pay}.",
    "{Items}{ref} isn't quite right, can I exchange {swaps_it}?{pay_s}",
    "i want to swap {swaps}{ref}{pay}",
    "I got {items}{ref} and want to exchange {swaps_it}{pay}.",
    "Could I exchange {swaps}{ref}?{pay_s}",
]
MODIFY = [
    "I'd like to change {swaps_to}{ref}{pay}.",
    "Before it ships, can you switch {swaps_to}{ref}?{pay_s}",
    "Please modify my order: change {swaps_to}{ref}{pay}.",
    "I ordered {items}{ref} but I need {swaps_it_to}{pay}.",
    "can you change {swaps_to}{ref}{pay}",
    "I picked the wrong option, please change {swaps_to}{ref}{pay}.",
    "Could you update {swaps_to}{ref}?{pay_s}",
    "I want to modify my pending order and change {swaps_to}{ref}{pay}.",
    "change {swaps_to}{ref} pls{pay}",
    "I'd like {swaps_to}{ref} instead{pay}.",
    "Can I still change {swaps_to}{ref}? It hasn't shipped yet.{pay_s}",
    "Please switch {swaps_to}{ref}{pay}.",
    "I need to change {swaps_to}{ref}{pay}.",
    "My order hasn't shipped yet, I want to change {swaps_to}{ref}{pay}.",
    "i want to modify {swaps_to}{ref}{pay}",
]
CANCEL = [
    "Please cancel my order with {items}{ref}, {reason}.",
    "I want to cancel the order that has {items} in it{ref} because {reason}.",
    "Can you cancel my order of {items}{ref}? {Reason}.",
    "cancel the order with {items}{ref} pls, {reason}",
    "I'd like to cancel my pending order with {items}{ref}; {reason}.",
    "I need the order with {items}{ref} cancelled. {Reason}.",
    "Could you cancel my order for {items}{ref}? {Reason}.",
    "{Reason}, so please cancel the order with {items}{ref}.",
    "Please cancel the order containing {items}{ref}, {reason}.",
    "I want to cancel my order with {items}{ref} since {reason}.",
    "Cancel my order with {items}{ref}, please. {Reason}.",
    "i need to cancel the order with {items}{ref}, {reason}",
    "Can the order with {items}{ref} be cancelled? {Reason}.",
    "I'd like the order with {items}{ref} cancelled, {reason}.",
    "Please cancel the {bare} order{ref}. {Reason}.",
]
PAYMENT = [
    "I'd like to pay for my order with {items}{ref} using {pm} instead.",
    "Can you switch the payment of my order with {items}{ref} to {pm}?",
    "Please charge the order with {items}{ref} to {pm} instead.",
    "I want to change how I pay for the order with {items}{ref}: use {pm}.",
    "change the payment for my order with {items}{ref} to {pm}",
    "Could my order with {items}{ref} be paid with {pm} instead?",
    "I'd rather use {pm} for the order with {items}{ref}.",
    "Please move the payment of my {bare} order{ref} to {pm}.",
    "switch my order with {items}{ref} over to {pm} please",
    "For the order with {items}{ref}, I want to pay with {pm}.",
    "Can I pay the order with {items}{ref} with {pm}?",
    "I want to use {pm} for my order with {items}{ref}.",
    "please use {pm} to pay for the order with {items}{ref}",
    "I'd like to change the payment method of the order with {items}{ref} to {pm}.",
    "Could you put my order with {items}{ref} on {pm} instead?",
]
ADDRESS = [
    "Please ship my order with {items}{ref} to {address} instead.",
    "I need to change the delivery address of the order with {items}{ref} to {address}.",
    "Can you send the order with {items}{ref} to {address}?",
    "I moved, so the order with {items}{ref} should go to {address}.",
    "update the shipping address on my order with {items}{ref} to {address}",
    "Could you change where my order with {items}{ref} goes? New address: {address}.",
    "The order with {items}{ref} has the wrong address, it should be {address}.",
    "Please redirect my order with {items}{ref} to {address}.",
    "change the address for the order with {items}{ref} to {address} please",
    "I'd like my order with {items}{ref} delivered to {address}.",
    "Ship the order with {items}{ref} to {address}, please.",
    "My order with {items}{ref} needs to go to {address} instead.",
    "can the order with {items}{ref} be shipped to {address}?",
    "Please change the shipping address of the order with {items}{ref} to {address}.",
    "I want the order with {items}{ref} sent to {address}.",
]
USER_ADDRESS = [
    "Please update my default address to {address}.",
    "I moved; my new address is {address}. Can you update my profile?",
    "change my account address to {address}",
    "I'd like to change the address on my profile to {address}.",
    "Can you set my default shipping address to {address}?",
    "My address changed to {address}, please update it.",
    "please update my home address: {address}",
    "I need my default address changed to {address}.",
    "New address for my account: {address}.",
    "Could you change my profile address to {address}?",
    "I want to update my address on file to {address}.",
    "update my address to {address} pls",
    "Please put {address} as my default address.",
    "My default address should be {address} now.",
    "I've moved to {address}, can you change my account?",
]
REASONS = {
    "no longer needed": [
        "I don't need it anymore",
        "I no longer need it",
        "it's not needed anymore",
        "I won't need it after all",
        "I don't need it any more",
        "turns out I don't need it",
        "I have no use for it now",
        "I no longer need that stuff",
        "we don't need it anymore",
        "I don't need it now",
    ],
    "ordered by mistake": [
        "I ordered it by mistake",
        "I ordered it by accident",
        "it was a mistake",
        "I placed it by mistake",
        "I bought it by accident",
        "that order was a mistake",
        "I ordered that by mistake",
        "it was ordered by mistake",
        "I clicked buy by accident",
        "I made the order by mistake",
    ],
}
REFUND_CLAUSE = [
    ", refund to {pm}",
    " and put the refund on {pm}",
    ", with the money back to {pm}",
    " - refund {it} to {pm} please",
    ", I'd like the refund on {pm}",
    ", refunded to {pm}",
    " (refund to {pm})",
    ", money back to {pm} please",
    " and send the refund to {pm}",
    ", refund to {pm} please",
]
REFUND_SENTENCE = [
    " Refund to {pm}, please.",
    " The refund should go to {pm}.",
    " Please refund {pm}.",
    " I'd like the money back on {pm}.",
    " Put the refund on {pm}.",
    " Refund {pm} please.",
    " Money back to {pm}.",
    " Send the refund to {pm}.",
    " I want the refund on {pm}.",
    " Refund it to {pm}.",
]
DIFF_CLAUSE = [
    ", and charge any difference to {pm}",
    ", paying any price difference with {pm}",
    " (use {pm} for the difference)",
    ", any difference on {pm}",
    " - put the difference on {pm}",
    ", with {pm} for any price difference",
    ", settle the difference with {pm}",
    " and use {pm} if there's a difference",
    ", difference to {pm}",
    ", and use {pm} for any extra cost",
]
DIFF_SENTENCE = [
    " Use {pm} for any price difference.",
    " Any difference can go on {pm}.",
    " Please use {pm} for the difference.",
    " If the price differs, use {pm}.",
    " Charge or refund the difference on {pm}.",
    " Put any difference on {pm}.",
    " {Pm} for the difference, please.",
    " Settle the difference with {pm}.",
    " The difference goes on {pm}.",
    " Use {pm} for any extra.",
]
ONE_PAYMENT = [
    " Use {pm} for any refund or price difference.",
    " I prefer {pm} for any payment or refund.",
    " Please use {pm} for all refunds and differences.",
    " Any money back or extra charge goes on {pm}.",
    " {Pm} for everything money-related, please.",
    " Refunds and differences to {pm}, please.",
    " I'd like {pm} used for any refund or charge.",
    " Use {pm} for all of it.",
    " Please settle everything with {pm}.",
    " Any refund or difference on {pm}.",
]
ORDER_REF = [
    " from order {oid}",
    " (order {oid})",
    " in {oid}",
    " from {oid}",
    " in order {oid}",
    " (it's order {oid})",
    " from my order {oid}",
    " - order {oid}",
    " in my order {oid}",
    " ({oid})",
]
RETRACT = [
    " Actually, only {keep}, please.",
    " Actually, just {keep}.",
    " Hmm, scratch {drop}, only {keep}.",
    " On second thought, leave {drop} as it is and just do {keep}.",
    " Wait, forget about {drop}. Only {keep}.",
    " Actually never mind {drop}, just {keep}.",
    " No, only {keep} actually.",
    " Actually I'll keep {drop}, so only {keep}.",
    " Sorry, just {keep}, not {drop}.",
    " Let's skip {drop} - only {keep}.",
]
SWITCH_TO_RETURN = [
    "Hmm, actually I'd rather just return {it} instead.",
    "No wait, can I return {it} instead? Refund to the original payment.",
    "Actually, let's return {it} instead of exchanging.",
    "On second thought, I'll return {it} for a refund.",
    "no, just return {it} please",
    "Actually, forget the exchange, I want to return {it}.",
    "Hmm no, return {it} instead.",
    "I changed my mind, please return {it} instead.",
    "Actually make it a return instead.",
    "Let's do a return instead of an exchange.",
]
SWITCH_TO_CANCEL = [
    "Actually, just cancel the whole order, I don't need it anymore.",
    "Hmm no, please cancel the order instead, I no longer need it.",
    "On second thought, cancel the order - I don't need it anymore.",
    "no, cancel the whole thing please, not needed anymore",
    "Actually I'd rather cancel the order, I won't need it after all.",
    "Forget the change, cancel the order instead. I don't need it.",
    "Let's cancel the order instead, I no longer need it.",
    "Actually cancel it, I don't need it anymore.",
    "Wait, just cancel that order instead. No longer needed.",
    "no thanks, I'd like to cancel the order instead, I don't need it",
]

STATUS = [
    "Where is my order with {items}{ref}?",
    "Has the order with {items}{ref} shipped yet?",
    "What's the status of my {bare} order{ref}?",
    "Can you check on the order with {items}{ref}?",
    "I'm wondering whether my order with {items}{ref} has been delivered.",
    "any news on my order with {items}{ref}?",
    "Did my order with {items}{ref} go out yet?",
    "what's happening with the order with {items}{ref}?",
    "Could you tell me the status of my order with {items}{ref}?",
    "I'd like an update on my order with {items}{ref}.",
    "Is the order with {items}{ref} on its way?",
    "where's my {bare} order{ref}?",
    "I ordered {items} a while ago{ref}, what's the status?",
    "What's going on with my order with {items}{ref}?",
    "Can you tell me if the order with {items}{ref} was delivered?",
]
STATUS_ONE = [
    "Where is my order?",
    "What's the status of my order?",
    "has my order shipped?",
    "Can you check on my order?",
    "Any update on my order?",
    "Is my order on its way?",
    "what's up with my order",
    "I'd like to know the status of my order.",
    "Has my order arrived yet?",
    "What's happening with my order?",
]
ORDER_TAG = [
    " (order {oid})",
    " ({oid})",
    " (it's {oid})",
    " (order number {oid})",
    ", order {oid},",
    " - {oid} -",
    " (#{bare_oid})",
    " (order {bare_oid})",
    " (the order id is {oid})",
    " ({oid} I think)",
]
CANCEL_DELIVERED = [
    "I want to cancel my order with {items}{ref}.",
    "Please cancel the order with {items}{ref}, I don't want it anymore.",
    "Can you cancel my {bare} order{ref}?",
    "cancel the order with {items}{ref} please",
    "I'd like to cancel the order that had {items}{ref}.",
    "I need to cancel my order with {items}{ref}, I changed my mind.",
    "Could you cancel my order of {items}{ref}?",
    "Please cancel {items}{ref}, I don't need it.",
    "i want the order with {items}{ref} cancelled",
    "Cancel the order with {items}{ref}, please.",
]
RETURN_UNDELIVERED = [
    "I want to return {items}{ref}.",
    "I'd like to send back {items}{ref}.",
    "Can I return {items}{ref}?",
    "please return {items}{ref}",
    "I want a refund for {items}{ref}, I'm returning it.",
    "How do I return {items}{ref}? I want to send it back.",
    "I need to return {items}{ref}.",
    "return {items}{ref} please",
    "I'd like to return {items} I ordered{ref}.",
    "Could you set up a return for {items}{ref}?",
]
HANDOFF: dict[str, tuple[list[str], str, bool]] = {
    # kind: (phrasings, summary, needs the order looked up first)
    "lost": (
        [
            "My order with {items}{ref} says delivered but it never arrived.",
            "The tracking says my {bare}{ref} was delivered, but I never got it.",
            "I never received the order with {items}{ref}, even though it shows delivered.",
            "my {bare} order{ref} is marked delivered but nothing came",
            "The order with {items}{ref} didn't arrive, but it says it was delivered.",
            "Where is my {bare}{ref}? It says delivered but it's not here.",
            "I didn't get my order with {items}{ref}; it's marked as delivered.",
            "the package with {items}{ref} never showed up but the status says delivered",
            "My parcel with {items}{ref} is missing although it was marked delivered.",
            "Order with {items}{ref} shows delivered, but I have nothing.",
        ],
        "Customer says order {order_id} is marked delivered but never arrived.",
        True,
    ),
    "damaged": (
        [
            "My {bare}{ref} arrived broken.",
            "The {bare} I got{ref} was damaged in shipping.",
            "my {bare}{ref} came damaged, what can you do?",
            "The box with {items}{ref} arrived crushed and it's broken.",
            "The {bare}{ref} arrived with a crack in it.",
            "I received {items}{ref} but it's damaged.",
            "the {bare}{ref} was broken when it arrived",
            "My {bare}{ref} showed up damaged.",
            "{Items}{ref} came in pieces, it's completely broken.",
            "The {bare}{ref} arrived damaged, I'm really disappointed.",
        ],
        "Customer reports a damaged item in order {order_id}.",
        True,
    ),
    "human": (
        [
            "I want to talk to a real person.",
            "Can I speak to a human agent please?",
            "get me a human",
            "I'd like to talk to someone from your team, not a bot.",
            "Please transfer me to a person.",
            "Is there a human I can talk to?",
            "connect me with a real agent",
            "I need to speak with a manager.",
            "Let me talk to a person please.",
            "I want a human to handle this.",
        ],
        "Customer asks for a human agent.",
        False,
    ),
    "email": (
        [
            "I need to change the email address on my account.",
            "Can you update my account email? I have a new one.",
            "please change my email on the account",
            "I want to use a different email for my account.",
            "My email changed, can you update it on my profile?",
            "How can I change my account's email address? Please do it for me.",
            "I'd like to switch my login email.",
            "change the email on my profile please",
            "I need a new email on my account.",
            "Could you replace the email on my account?",
        ],
        "Customer wants to change the email on the profile.",
        False,
    ),
    "payment_method": (
        [
            "I want to add a new credit card to my account.",
            "Please remove my old card from my profile.",
            "can you add paypal to my account",
            "I need to update the card saved on my account.",
            "Please delete a payment method from my profile.",
            "How do I add a new card? Please add it for me.",
            "I'd like to replace my saved credit card.",
            "add a new payment method to my profile please",
            "Can you take my old credit card off the account?",
            "I want to change the payment methods on my profile.",
        ],
        "Customer wants to change the payment methods on the profile.",
        False,
    ),
    "complaint": (
        [
            "I want to file a complaint about your delivery service.",
            "This is the third time something went wrong, I want to complain.",
            "I'd like to make a formal complaint.",
            "your courier was rude to me and I want to complain",
            "I want to lodge a complaint about my last delivery.",
            "I'm very unhappy with the service and want to complain officially.",
            "Please register a complaint, the delivery guy threw my parcel.",
            "I want to complain about how my order was handled.",
            "I need to file a complaint.",
            "complaint: the driver left my parcel in the rain",
        ],
        "Customer wants to file a complaint.",
        False,
    ),
    "uncancel": (
        [
            "I cancelled an order by accident, can you undo the cancellation?",
            "Please restore my cancelled order.",
            "can you un-cancel my order?",
            "I want my cancelled order back.",
            "I didn't mean to cancel my order, please reinstate it.",
            "Could you reverse the cancellation of my order?",
            "I need to undo a cancellation.",
            "please revive the order I cancelled",
            "Can you reopen an order I cancelled?",
            "I cancelled by mistake, can it be undone?",
        ],
        "Customer wants a cancelled order restored.",
        False,
    ),
}
# The graph answers these itself (agent/graph.py `_OFF_TOPIC` matches, `_ON_TOPIC` does not): no target.
OFF_TOPIC = [
    "tell me a joke first",
    "What's the weather like tomorrow?",
    "can you write me a poem about cats",
    "Who won the football game last night?",
    "What's the capital of Peru?",
    "recommend a good movie for tonight",
    "what's a good recipe for pancakes",
    "Can you translate 'thank you' into Italian?",
    "what's my horoscope today",
    "Do you know any good songs?",
]
# Policy questions, each with the section of the demo policies that answers it (doc id, section heading).
POLICY_QUESTIONS: list[tuple[str, str, str]] = [
    ("returns", "Return window", "I got something three weeks ago, is it too late to send it back?"),
    ("returns", "Return window", "what's the time limit on returns"),
    ("returns", "Which orders can be returned", "can I return something that hasn't been delivered yet?"),
    ("returns", "How to request a return", "How does a return work with you guys?"),
    ("returns", "Refund for a return", "where does the money go when I return stuff?"),
    ("returns", "Return window", "Is there a deadline for returning an item?"),
    ("refunds-and-payment", "Refund timing", "how long until a refund shows up on my card?"),
    ("refunds-and-payment", "Refund timing", "When will I get my money back on PayPal?"),
    ("refunds-and-payment", "Accepted payment methods", "what ways can I pay?"),
    ("refunds-and-payment", "Where a refund goes", "can you refund to a different card than the one I used?"),
    (
        "refunds-and-payment",
        "Price adjustments",
        "the price dropped after I bought it, can I get the difference?",
    ),
    ("refunds-and-payment", "Refund timing", "how fast are gift card refunds?"),
    ("exchanges", "Which orders can be exchanged", "how long after delivery can I still exchange something?"),
    ("exchanges", "What you can exchange for", "can I exchange my lamp for a totally different product?"),
    ("exchanges", "One exchange request per order", "can I exchange things from one order in two goes?"),
    ("exchanges", "Price differences", "what if the item I exchange for is more expensive?"),
    ("exchanges", "Which orders can be exchanged", "can I exchange something that's still on its way?"),
    ("cancellation-and-changes", "Cancelling an order", "up to when can I cancel an order?"),
    (
        "cancellation-and-changes",
        "Changing a pending order",
        "what can I still change on an order that hasn't shipped?",
    ),
    ("cancellation-and-changes", "Changing items", "can I change items in my order more than once?"),
    (
        "cancellation-and-changes",
        "Changing the payment method",
        "can I pay with something else after ordering?",
    ),
    ("cancellation-and-changes", "Cancelling an order", "what do I need to give you to cancel an order?"),
    ("gift-cards", "Using a gift card", "can my gift card pay for only part of an order?"),
    ("gift-cards", "Balance and expiry", "does the balance on a gift card run out at some point?"),
    ("gift-cards", "Refunds to a gift card", "if I get refunded to a gift card, how quickly is it there?"),
    ("gift-cards", "Balance and expiry", "can I turn my gift card balance into cash?"),
    ("shipping", "Delivery times", "how many days does delivery usually take?"),
    ("shipping", "Order statuses", "what's the difference between processed and pending?"),
    ("shipping", "Changing the delivery address", "can I change the address after the order was processed?"),
    ("shipping", "Lost or damaged parcels", "what do you do if a parcel gets lost?"),
    ("shipping", "Delivery times", "When do I get a tracking number for my order?"),
    ("account-and-privacy", "Verifying who you are", "why do you need my email before helping me?"),
    ("account-and-privacy", "One customer per conversation", "can you look at my mom's orders too?"),
    ("account-and-privacy", "Your data", "can I get my account deleted?"),
    ("account-and-privacy", "What you can change yourself", "what can I change on my profile myself?"),
    ("human-handoff", "What happens during a transfer", "when are your human agents working?"),
    ("human-handoff", "When we hand you over", "in what cases do you pass me to a person?"),
    ("human-handoff", "Confirming actions first", "will you change anything without asking me first?"),
    ("refunds-and-payment", "Where a refund goes", "can I get the refund in cash?"),
    ("returns", "How to request a return", "do I need to put all returned items in one request?"),
]
# Questions the demo policies do not answer: the model still searches; the graph says it has no answer.
UNANSWERABLE = [
    "do your laptops come with a warranty?",
    "How many loyalty points did I earn on my last order?",
    "Do you ship to the UK?",
    "is there a discount for teachers?",
    "can I pick up my order at one of your stores?",
    "Do you offer gift wrapping for presents?",
    "what courier do you ship with",
    "Can I pay in installments?",
    "do you have a rewards card",
    "Is there a restocking fee?",
    "Can I order to Germany?",
    "Do your products have a lifetime guarantee?",
    "are there any coupon codes right now?",
    "Can I get an invoice with my company name on it?",
    "do you deliver on Sundays",
]
ADDRESS_FORMS = [
    "{a1}, {a2}, {city}, {state} {zip}",
    "{a1}, {a2}, {city}, {state} {zip}, {country}",
    "{a1} {a2}, {city} {state} {zip}",
    "{a1}, {a2}, {city}, {state}, {zip}",
    "{a1}, {a2}, {city} {state}, {zip}",
]
DEFAULT_ADDRESS = [
    "my default address",
    "the address on my profile",
    "my home address (it's on my profile)",
    "my default address on the account",
    "the default address in my profile",
]


# ---------------------------------------------------------------------------------------------------------
# Words for the store's facts.


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def jaccard(a: str, b: str) -> float:
    """Token Jaccard similarity of two texts (lower-cased word and number tokens)."""
    ta, tb = _tokens(a), _tokens(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 1.0


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _decap(text: str) -> str:
    """Lower the first letter, unless the sentence starts with "I" ("I'd", "I'm")."""
    return text if re.match(r"I\b", text) else text[:1].lower() + text[1:]


def _sentences(parts: Sequence[str]) -> str:
    """Requests as consecutive sentences, each ending in punctuation and starting with a capital."""
    out = []
    for part in parts:
        part = part.strip()
        out.append(_cap(part) if part[-1:] in ".!?" else _cap(part) + ".")
    return " ".join(out)


def _typo(rng: random.Random, text: str) -> str:
    """Swap two letters inside one longer plain word (never in ids, emails, names or numbers)."""
    words = [m for m in re.finditer(r"(?<![\w@.#-])[a-z]{5,}(?![\w@.-])", text)]
    if not words:
        return text
    m = rng.choice(words)
    i = rng.randrange(m.start() + 1, m.end() - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _noisy(rng: random.Random, text: str) -> str:
    return _typo(rng, text) if rng.random() < 0.15 else text


def product_name(item: dict[str, Any]) -> str:
    """How a person names a product: lower case but acronyms ("mechanical keyboard", "LED light bulb")."""
    return " ".join(w if w.isupper() else w.lower() for w in str(item["name"]).split())


_RANKS = [
    ["XS", "S", "M", "L", "XL", "XXL"],
    ["small", "medium", "large"],
    ["low", "medium", "high"],
    ["basic", "professional"],
]


def _rank(value: str) -> float | None:
    for scale in _RANKS:
        if value in scale:
            return float(scale.index(value))
    m = re.match(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", value)
    if not m:
        return None
    number = float(m.group(1))
    unit = m.group(2).upper()
    return number * 1000 if unit in {"TB", "K"} else number


# Option keys whose values are ordered, and the comparative a person uses ("a bigger one", "with more RAM").
_ADJ = {
    "size": ("bigger", "smaller"),
    "capacity": ("bigger", "smaller"),
    "frame size": ("bigger", "smaller"),
    "room size": ("bigger", "smaller"),
    "diameter": ("bigger", "smaller"),
    "height": ("taller", "shorter"),
    "length": ("longer", "shorter"),
    "thickness": ("thicker", "thinner"),
    "weight range": ("heavier", "lighter"),
    "brightness": ("brighter", "less bright"),
    "piece count": ("bigger", "smaller"),
}
_MORE = {
    "storage": ("with more storage", "with less storage"),
    "ram": ("with more RAM", "with less RAM"),
    "RAM": ("with more RAM", "with less RAM"),
    "battery life": ("with a longer battery life", "with a shorter battery life"),
    "resolution": ("with a higher resolution", "with a lower resolution"),
    "pressure": ("with higher pressure", "with lower pressure"),
    "screen size": ("with a bigger screen", "with a smaller screen"),
    "pieces": ("with more pieces", "with fewer pieces"),
    "zoom": ("with more zoom", "with less zoom"),
}
_WITH_A = {
    "style": "{v}",
    "sole": "{v} sole",
    "zipper": "{v} zipper",
    "backrest height": "{v} backrest",
    "filter type": "{v} filter",
    "cover type": "{v}",
    "display": "{v} display",
    "sensor type": "{v} sensor",
    "scent family": "{v} scent",
    "theme": "{v} theme",
    "design": "{v} design",
    "frame size": "{v} frame",
    "frame material": "{v} frame",
    "strap material": "{v} strap",
    "band material": "{v} band",
    "deck material": "{v} deck",
    "frame color": "{v} frame",
    "dial color": "{v} dial",
    "lens color": "{v} lens",
    "screen size": "{v} screen",
}


def option_words(key: str, value: str) -> str:
    """A postmodifier for one option value ("in black", "with clicky switches", "compatible with X")."""
    k, v = key.lower(), value
    if k in _WITH_A:
        return "with " + _a(_WITH_A[k].format(v=v))
    if k == "color":
        return f"in {v}"
    if k == "size":
        if v in {"small", "medium", "large", "portable"} or "size" in v:
            return f"in {v}" if "size" in v else f"in the {v} size"
        return f"in size {v}"
    if k in {"material", "color temperature"}:
        return f"in {v}"
    if k == "compatibility":
        return f"compatible with {v}"
    if k == "stovetop compatibility":
        return f"for {v} stovetops"
    if k == "switch type":
        return f"with {v} switches"
    if k == "power source":
        return f"powered by {v}" if v != "battery" else "that runs on battery"
    if k == "processor":
        return f"with an {v} processor"
    if k == "lens type":
        return f"with {v} lenses"
    if k == "gender":
        return f"for {v}"
    if k == "skin tone":
        return f"for {v} skin"
    if k == "brand":
        return f"from {v}"
    if k == "difficulty level":
        return f"at {v} level"
    if k in {"type", "set type", "bagged/bagless", "connectivity"} and v not in {"none"}:
        if k == "connectivity" and v not in {"wired", "wireless"}:
            return f"with {v}"
        return f"that's {v}" if k != "type" else f"of the {v} type"
    if k in {"waterproof", "water resistance", "visor"} and v in {"yes", "no"}:
        what = {"waterproof": "waterproof", "water resistance": "water resistant", "visor": "with a visor"}[k]
        return (
            (f"that's {what}" if k != "visor" else what)
            if v == "yes"
            else (f"that's not {what}" if k != "visor" else "without a visor")
        )
    if k == "water resistance":
        return "that's not water resistant" if v == "not resistant" else f"with {v} water resistance"
    if v == "none":
        return f"without {k if k != 'features' else 'extra features'}"
    if k in {"features", "armrest"}:
        return f"with {v}" if k == "features" else f"with {v} armrests"
    if k == "piece count":
        return f"as a {v} set"
    if k == "pieces":
        return f"with {v} pieces"
    return f"with {v} {k}"


def _a(phrase: str) -> str:
    """The phrase with its indefinite article ("a leather strap", "an LCD display", "an 8-inch screen")."""
    vowel = re.match(r"[aeiouAEIOU]|[AEFHILMNORSX][A-Z]|8|11|18", phrase)
    return ("an " if vowel else "a ") + phrase


def _consistent(
    variant: dict[str, Any], old: dict[str, str], named: dict[str, str], compared: dict[str, int]
) -> bool:
    for key, value in (variant.get("options") or {}).items():
        if key in named:
            if value != named[key]:
                return False
        elif key in compared:
            a, b = _rank(str(value)), _rank(old.get(key, ""))
            if a is None or b is None or (a - b) * compared[key] <= 0:
                return False
        elif value != old.get(key):
            return False
    return True


def new_item_words(
    rng: random.Random, item: dict[str, Any], product: dict[str, Any], new_id: str
) -> tuple[list[str], list[str]]:
    """(comparatives, postmodifiers) that pick out exactly the new variant among the available ones,
    the old item's other options staying the same ("a bigger one" + ["in black"])."""
    old = {str(k): str(v) for k, v in (item.get("options") or {}).items()}
    new = {str(k): str(v) for k, v in product["variants"][new_id]["options"].items()}
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    others = [
        v
        for v in product["variants"].values()
        if v.get("available", True) and v["item_id"] != item["item_id"]
    ]
    named = dict(changed)
    compared: dict[str, int] = {}
    for key in list(changed):
        if (key in _ADJ or key in _MORE) and rng.random() < 0.5:
            a, b = _rank(new[key]), _rank(old.get(key, ""))
            if a is None or b is None or a == b:
                continue
            trial = {k: v for k, v in named.items() if k != key}
            trial_cmp = {**compared, key: 1 if a > b else -1}
            fits = [v for v in others if _consistent(v, old, trial, trial_cmp)]
            if [v["item_id"] for v in fits] == [new_id]:
                named, compared = trial, trial_cmp
    adjectives = [_ADJ[k][0 if d > 0 else 1] for k, d in compared.items() if k in _ADJ]
    posts = [_MORE[k][0 if d > 0 else 1] for k, d in compared.items() if k in _MORE]
    posts += [option_words(k, v) for k, v in named.items()]
    if not adjectives and not posts:
        posts = [option_words(k, v) for k, v in new.items()][:1]
    same = [k for k in new if k not in changed]
    if same and rng.random() < 0.25:
        posts.append(rng.choice(["with everything else the same", f"same {rng.choice(same)}"]))
    return adjectives, posts


def _join(parts: Sequence[str]) -> str:
    parts = list(parts)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def new_item_phrase(rng: random.Random, name: str, adjectives: list[str], posts: list[str]) -> str:
    """The new item as a noun phrase: "the same one but with clicky switches", "a bigger one in black"."""
    tail = " ".join(posts) if len(posts) <= 1 else _join(posts)
    if adjectives:
        head = f"a {' and '.join(adjectives)} one"
        return f"{head} {tail}".strip()
    form = rng.choice(["one {t}", "the same one but {t}", "the one {t}", "{n} {t}", "one {t}"])
    return form.format(t=tail, n=_a(name))


def payment_words(user: dict[str, Any], pm_id: str, paid: str | None, rng: random.Random) -> str:
    """A payment method as a person names it ("my PayPal", "the card I paid with"), or its id when words
    would not tell it apart from the customer's other methods (the profile shows ids only)."""
    methods = user["payment_methods"]
    method = methods[pm_id]
    source = method["source"]
    same_kind = [p for p, m in methods.items() if m["source"] == source]
    options: list[str] = []
    if pm_id == paid:
        options += ["the original payment method", "my original payment method"]
        if source == "credit_card":
            options += ["the card I paid with"]
    if source == "paypal":
        options += ["PayPal", "my PayPal", "my PayPal account"]
    elif source == "gift_card" and len(same_kind) == 1:
        options += ["my gift card", "the gift card", "the gift card on my account"]
    elif source == "credit_card" and len(same_kind) == 1:
        brand = {"visa": "Visa card", "mastercard": "Mastercard", "amex": "Amex", "discover": "Discover card"}
        options += ["my credit card", "my card", "my " + brand.get(str(method.get("brand")), "credit card")]
    elif source == "credit_card" and len(same_kind) == 2 and paid in same_kind and pm_id != paid:
        options += ["my other credit card, not the one I paid with"]
    return rng.choice(options) if options else pm_id


def address_words(rng: random.Random, args: dict[str, Any]) -> str:
    """An address as a customer types it."""
    form = rng.choice(ADDRESS_FORMS) if args.get("address2") else "{a1}, {city}, {state} {zip}"
    return form.format(
        a1=args["address1"],
        a2=args.get("address2", ""),
        city=args["city"],
        state=args["state"],
        zip=args["zip"],
        country=args["country"],
    )


# ---------------------------------------------------------------------------------------------------------
# The store, with the two results `StoreTools` does not give as the agent's systems do.


class PeopleTools(StoreTools):
    """`StoreTools` with the real systems' answers for an unknown email and a default-address change."""

    def call(self, name: str, args: dict[str, Any]) -> str:
        """Run one tool and return its result text."""
        if name == "find_user_id_by_email" and not any(
            u.get("email") == args["email"] for u in self.users.values()
        ):
            return "Error: No customer has that email."
        if name == "modify_user_address":
            user = dict(self.users[args["user_id"]])
            user["address"] = {k: args[k] for k in ADDRESS_FIELDS}
            return json.dumps(user)
        return super().call(name, args)


@dataclass
class Talk(Builder):
    """One conversation; customer turns are taken as written (people.py places typos itself)."""

    seen_passages: list[dict[str, Any]] = field(default_factory=list)

    def user(self, text: str) -> None:
        """Append a customer turn as is."""
        self.messages.append({"role": "user", "content": text})

    def last_user(self) -> str:
        """The customer's latest message."""
        return str(next(m["content"] for m in reversed(self.messages) if m["role"] == "user"))


ELIGIBLE = {
    "return_delivered_order_items": "delivered",
    "exchange_delivered_order_items": "delivered",
    "cancel_pending_order": "pending",
    "modify_pending_order_items": "pending",
    "modify_pending_order_payment": "pending",
    "modify_pending_order_address": "pending",
}


@dataclass
class Request:
    """One thing the customer asks for: the gold write and the words for it."""

    action: Action
    text: str
    stated: str | None = None  # an order id the words give


def _paid(order: dict[str, Any]) -> str | None:
    history = order.get("payment_history") or []
    return str(history[0]["payment_method_id"]) if history else None


def _product_of(tools: StoreTools, item_id: str) -> dict[str, Any]:
    return next(p for p in tools.products.values() if item_id in p["variants"])


class Words:
    """Turns one customer's gold actions into the words that person would use."""

    def __init__(self, tools: StoreTools, user_id: str, rng: random.Random, split: Split) -> None:
        self.tools, self.user_id, self.rng, self.split = tools, user_id, rng, split
        self.user = tools.users[user_id]
        self.orders = [tools.orders[o] for o in self.user["orders"] if o in tools.orders]
        # a customer who has the order ids at hand gives them (for every order they mention)
        self.gives_ids = rng.random() < STATED_ORDER_SHARE

    def phrase(self, options: Sequence[str]) -> str:
        """One phrasing of a list (the training split never sees every fifth)."""
        return pick(self.rng, options, self.split)

    def item(self, order: dict[str, Any], item: dict[str, Any], *, pending: bool = False) -> str:
        """An item in words; a distinguishing option is added when its order has two of that product."""
        name = product_name(item)
        twins = [i for i in order["items"] if i["name"] == item["name"] and i["item_id"] != item["item_id"]]
        if twins:
            old = item.get("options") or {}
            key = next(
                (k for k in old if any((t.get("options") or {}).get(k) != old[k] for t in twins)), None
            )
            if key is not None:
                return f"the {name} {option_words(key, str(old[key]))}"
        forms = ITEM_FORMS_PENDING if pending else ITEM_FORMS
        return self.rng.choice(forms).format(n=name)

    def items(self, order: dict[str, Any], item_ids: Sequence[str], *, pending: bool = False) -> str:
        """Several items in words ("the keyboard and the desk lamp"); everything, when it is everything."""
        by_id = {i["item_id"]: i for i in order["items"]}
        if len(item_ids) > 1 and sorted(item_ids) == sorted(by_id) and self.rng.random() < 0.3:
            return self.rng.choice(["everything in my order with ", "all items of my order with "]) + (
                self.item(order, by_id[item_ids[0]], pending=pending)
            )
        words: list[str] = []
        for iid in dict.fromkeys(item_ids):
            count = list(item_ids).count(iid)
            text = self.item(order, by_id[iid], pending=pending)
            words.append(text if count == 1 else f"both {product_name(by_id[iid])}s")
        return _join(words)

    def order_items(self, order: dict[str, Any]) -> str:
        """An order named by one or two of its items ("the desk lamp and the notebook")."""
        items = list({i["name"]: i for i in order["items"]}.values())
        chosen = self.rng.sample(items, k=min(len(items), self.rng.choice([1, 1, 2])))
        return _join([f"the {product_name(i)}" for i in chosen])

    def mention(
        self, order: dict[str, Any], items: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, str], str | None]:
        """Template fills naming an order by one or two of its items ({items} "the desk lamp", {bare}
        "desk lamp") and, where needed or by habit, its id ({ref}); and the id stated. The customer does
        not know the status, so any earlier order with such an item makes the words ambiguous."""
        if items is None:
            distinct = list({i["name"]: i for i in order["items"]}.values())
            items = self.rng.sample(distinct, k=min(len(distinct), self.rng.choice([1, 1, 2])))
        the = _join([f"the {product_name(i)}" for i in items])
        fill = {"items": the, "Items": _cap(the), "bare": _join([product_name(i) for i in items]), "ref": ""}
        names = {i["name"] for i in items}
        if not self.ambiguous(order, names, None) and not self.gives_ids:
            return fill, None
        oid = str(order["order_id"])
        fill["ref"] = self.phrase(ORDER_TAG).format(oid=oid, bare_oid=oid.lstrip("#"))
        return fill, oid

    def ambiguous(self, order: dict[str, Any], names: set[str], status: str | None) -> bool:
        """Whether the profile-order scan would meet another order (of that status, or any) with one of
        these items before this one (then only the order id tells them apart)."""
        for other in self.orders:
            if other["order_id"] == order["order_id"]:
                return False
            if status in {None, str(other["status"])} and names & {i["name"] for i in other["items"]}:
                return True
        return False

    def ref(self, order: dict[str, Any], names: set[str], status: str | None) -> tuple[str, str | None]:
        """The order reference: empty, or the order id when the words alone would not do (or by habit)."""
        if self.ambiguous(order, names, status) or self.gives_ids:
            oid = str(order["order_id"])
            shown = oid if self.rng.random() < 0.85 else oid.lstrip("#")
            return self.phrase(ORDER_REF).format(oid=shown), oid
        return "", None

    def pay(self, pm_id: str, order: dict[str, Any]) -> str:
        """A payment method in words."""
        return payment_words(self.user, pm_id, _paid(order), self.rng)

    def request(self, action: Action, *, say_payment: bool = True) -> Request:
        """The customer's words for one gold write."""
        args = action.args
        if action.name == "modify_user_address":
            address = self.address(args, default=False)
            return Request(action, self.phrase(USER_ADDRESS).format(address=address))
        order = self.tools.orders[args["order_id"]]
        status = ELIGIBLE[action.name]
        pending = status == "pending"
        item_ids = list(args.get("item_ids") or [])
        by_id = {i["item_id"]: i for i in order["items"]}
        if item_ids:
            names = {by_id[i]["name"] for i in item_ids}
            items = self.items(order, item_ids, pending=pending)
        else:
            items = self.order_items(order)
            names = {n for n in {i["name"] for i in order["items"]} if product_name({"name": n}) in items}
        ref, stated = self.ref(order, names, status)
        it = "them" if len(item_ids) > 1 else "it"
        pm_id = args.get("payment_method_id")
        pm = self.pay(pm_id, order) if pm_id else ""
        pay = pay_s = ""
        if pm_id and say_payment:
            single = len(self.user["payment_methods"]) == 1
            if action.name == "return_delivered_order_items":
                if pm_id != _paid(order) or self.rng.random() < 0.7:
                    pay = self.phrase(REFUND_CLAUSE).format(pm=pm, it=it)
                    pay_s = self.phrase(REFUND_SENTENCE).format(pm=pm)
            elif not (single and pm_id == _paid(order) and self.rng.random() < 0.5):
                pay = self.phrase(DIFF_CLAUSE).format(pm=pm)
                pay_s = self.phrase(DIFF_SENTENCE).format(pm=pm, Pm=_cap(pm))
        bare = re.sub(r"\b(?:the|my) ", "", items)
        fill = {
            "items": items,
            "Items": _cap(items),
            "bare": bare,
            "ref": ref,
            "it": it,
            "pay": pay,
            "pay_s": pay_s,
        }
        if action.name == "return_delivered_order_items":
            return Request(action, self.phrase(RETURN).format(**fill), stated)
        if action.name in {"exchange_delivered_order_items", "modify_pending_order_items"}:
            swaps, swaps_to, swaps_it, swaps_it_to = [], [], [], []
            for old, new in zip(item_ids, args["new_item_ids"], strict=True):
                product = _product_of(self.tools, old)
                adjectives, posts = new_item_words(self.rng, by_id[old], product, new)
                phrase = new_item_phrase(self.rng, product_name(by_id[old]), adjectives, posts)
                words = self.item(order, by_id[old], pending=pending)
                swaps.append(f"{words} for {phrase}")
                swaps_to.append(f"{words} to {phrase}")
                swaps_it.append(f"{'it' if len(item_ids) == 1 else words} for {phrase}")
                swaps_it_to.append(f"{'it' if len(item_ids) == 1 else words} changed to {phrase}")
            fill |= {
                "swaps": _join(swaps),
                "swaps_to": _join(swaps_to),
                "swaps_it": _join(swaps_it),
                "swaps_it_to": _join(swaps_it_to),
            }
            table = EXCHANGE if action.name == "exchange_delivered_order_items" else MODIFY
            return Request(action, self.phrase(table).format(**fill), stated)
        if action.name == "cancel_pending_order":
            reason = self.phrase(REASONS[args["reason"]])
            return Request(
                action, self.phrase(CANCEL).format(**fill, reason=reason, Reason=_cap(reason)), stated
            )
        if action.name == "modify_pending_order_payment":
            return Request(action, self.phrase(PAYMENT).format(**fill, pm=pm), stated)
        address = self.address(args, default=True)
        return Request(action, self.phrase(ADDRESS).format(**fill, address=address), stated)

    def address(self, args: dict[str, Any], *, default: bool) -> str:
        """The new address in words; "my default address" when it is the profile's."""
        home = self.user["address"]
        same = all(str(home.get(k, "")) == str(args.get(k, "")) for k in ADDRESS_FIELDS)
        if default and same and self.rng.random() < 0.6:
            return self.rng.choice(DEFAULT_ADDRESS)
        return address_words(self.rng, args)


# ---------------------------------------------------------------------------------------------------------
# The graph's steps.


def _identify_call(t: Talk, user: dict[str, Any], how: str) -> None:
    if how == "email":
        t.call("find_user_id_by_email", {"email": user["email"]}, "identify")
    else:
        n = user["name"]
        args = {"first_name": n["first_name"], "last_name": n["last_name"], "zip": user["address"]["zip"]}
        t.call("find_user_id_by_name_zip", args, "identify")


def _identity_text(w: Words, how: str) -> str:
    user = w.user
    if how == "email":
        return w.phrase(EMAIL_IDENTITY).format(email=user["email"])
    n = user["name"]
    text = w.phrase(NAME_IDENTITY).format(
        first=n["first_name"], last=n["last_name"], zip=user["address"]["zip"]
    )
    extras = ""
    if w.rng.random() < 0.3:
        extras += w.phrase(NO_EMAIL)
    if w.rng.random() < 0.1:
        extras += w.phrase(USER_ID_MENTION).format(uid=w.user_id)
    if extras and text[-1:] not in ".!?)":
        text += "."
    return text + extras


def _wrong_email(tools: StoreTools, email: str, rng: random.Random) -> str:
    local, _, domain = email.partition("@")
    for _ in range(20):
        digits = "".join(str(rng.randrange(10)) for _ in range(4))
        candidate = f"{re.sub(r'[0-9]+$', '', local)}{digits}@{domain}"
        if candidate != email and not any(u.get("email") == candidate for u in tools.users.values()):
            return candidate
    return "x" + email


@dataclass
class Opening:
    """How the first message identifies the customer, and what follows until the user id is known."""

    how: str  # email | name | none | wrong | two
    text: str  # the identity part of the first message ("" when none)


def opening(w: Words, spec_how: str | None = None) -> Opening:
    """Draw how this customer identifies themselves."""
    roll = w.rng.random()
    how = spec_how if spec_how and w.rng.random() < 0.8 else w.rng.choice(["email", "name"])
    if roll < 0.12:
        return Opening("none", "")
    if roll < 0.16:
        wrong = _wrong_email(w.tools, w.user["email"], w.rng)
        return Opening("wrong", w.phrase(EMAIL_IDENTITY).format(email=wrong))
    if roll < 0.2:
        wrong = _wrong_email(w.tools, w.user["email"], w.rng)
        return Opening("two", w.phrase(TWO_EMAILS).format(a=wrong, b=w.user["email"]))
    return Opening(how, _identity_text(w, how))


def first_message(w: Words, ident: Opening, body: str, *, lower_ok: bool) -> str:
    """Greeting, identity and request in a person's order; sometimes all lower case."""
    greeting = w.phrase(GREETINGS)
    parts = [_noisy(w.rng, body)]
    if ident.text:
        parts.insert(0 if w.rng.random() < 0.5 else 1, ident.text)
    text = _sentences(parts)
    if greeting.rstrip().endswith(",") or greeting.strip().lower() in {"hey", "hi"}:
        text = _decap(text)  # "Hi there, this is ..." / "hey I want ..."
    text = re.sub(r"\s+", " ", greeting + text + w.phrase(CLOSINGS)).strip()
    return text.lower() if lower_ok and w.rng.random() < 0.12 else text


def identify(t: Talk, w: Words, ident: Opening) -> None:
    """From the first message to the user id, as the graph goes (asking when nothing was given)."""
    user = w.user
    if ident.how in {"email", "name"}:
        _identify_call(t, user, ident.how)
        return
    if ident.how == "two":
        wrong = re.findall(r"[\w.+-]+@[\w-]+\.[\w.-]*\w", ident.text)[0]
        t.call("find_user_id_by_email", {"email": wrong}, "identify")
        _identify_call(t, user, "email")
        return
    if ident.how == "wrong":
        wrong = re.findall(r"[\w.+-]+@[\w-]+\.[\w.-]*\w", ident.text)[0]
        t.call("find_user_id_by_email", {"email": wrong}, "identify")
        t.say(prompts.IDENTIFY_FIRST, "ask_identity")
        n = user["name"]
        if w.rng.random() < 0.6:
            t.user(w.phrase(CORRECT_EMAIL).format(email=user["email"]))
            _identify_call(t, user, "email")
        else:
            t.user(
                w.phrase(CORRECT_WITH_NAME).format(
                    first=n["first_name"], last=n["last_name"], zip=user["address"]["zip"]
                )
            )
            _identify_call(t, user, "name")
        return
    t.say(prompts.IDENTIFY_FIRST, "ask_identity")
    how = w.rng.choice(["email", "name"])
    n = user["name"]
    if how == "email":
        t.user(w.phrase(GIVE_EMAIL).format(email=user["email"]))
    else:
        t.user(
            w.phrase(GIVE_NAME).format(first=n["first_name"], last=n["last_name"], zip=user["address"]["zip"])
        )
    _identify_call(t, user, how)


def profile(t: Talk, user_id: str) -> None:
    """`get_user_details`: the real record, half the time with its user id in it as in the dev replays."""
    record = t.tools.users[user_id]
    shown = {"user_id": user_id, **record} if t.rng.random() < 0.5 else record
    t.call("get_user_details", {"user_id": user_id}, "lookup", result=json.dumps(shown))


def look_up_orders(t: Talk, w: Words, needed: Sequence[str], stated: Sequence[str], done: set[str]) -> None:
    """The stated order ids first, then the profile's orders in order until every needed one was read."""
    for oid in dict.fromkeys(stated):
        if oid not in done:
            t.call("get_order_details", {"order_id": oid}, "lookup")
            done.add(oid)
    for oid in w.user["orders"]:
        if set(needed) <= done:
            return
        if oid not in done:
            t.call("get_order_details", {"order_id": oid}, "lookup")
            done.add(oid)


def look_up_products(t: Talk, action: Action, done: set[str]) -> None:
    """Product details of each item a swap changes, once each."""
    for old in action.args.get("item_ids") or []:
        if not action.args.get("new_item_ids"):
            return
        pid = str(_product_of(t.tools, old)["product_id"])
        if pid not in done:
            t.call("get_product_details", {"product_id": pid}, "lookup")
            done.add(pid)


def execute(t: Talk, action: Action) -> dict[str, Any]:
    """After the customer's yes the graph executes the write (GRAPH) and the model goes on."""
    result = t.call(action.name, action.args, GRAPH)
    return dict(json.loads(result))


def _doc_sections() -> list[dict[str, str]]:
    from ingest import demo_policy_dir

    sections = []
    for path in sorted(demo_policy_dir().glob("*.md")):
        text = path.read_text()
        front, _, body = text.partition("\n---\n")
        doc_id = re.search(r"^id:\s*(\S+)", front, re.M)
        title = re.search(r"^title:\s*(.+)$", front, re.M)
        if not doc_id or not title:
            continue
        for chunk in body.split("\n## ")[1:]:
            heading, _, section_text = chunk.partition("\n")
            sections.append(
                {
                    "doc_id": doc_id.group(1),
                    "title": title.group(1).strip(),
                    "section": heading.strip(),
                    "text": re.sub(r"(?<!\n)\n(?![\n\d-])", " ", section_text.strip()),
                }
            )
    return sections


_SECTIONS: list[dict[str, str]] = []


def policy_sections() -> list[dict[str, str]]:
    """The demo policies split by "## " headings (doc id and title from the front matter)."""
    if not _SECTIONS:
        _SECTIONS.extend(_doc_sections())
    return _SECTIONS


def _shown(t: Talk, section: dict[str, str]) -> dict[str, str]:
    """A passage as the graph shows it, labelled `<doc_id>-<n>` by first appearance in the conversation."""
    key = (section["doc_id"], section["section"])
    known = next((p for p in t.seen_passages if (p["doc_id"], p["section"]) == key), None)
    if known is None:
        known = {**section, "label": f"{section['doc_id']}-{len(t.seen_passages) + 1}"}
        t.seen_passages.append(known)
    return {"label": known["label"], "title": f"{known['title']} § {known['section']}", "text": known["text"]}


def search(t: Talk, query: str, gold: tuple[str, str] | None) -> None:
    """`search_policies` with the customer's message verbatim; the passages; the graph's answer (GRAPH)."""
    sections = policy_sections()
    q = _tokens(query)
    ranked = sorted(sections, key=lambda s: -len(q & _tokens(s["text"] + " " + s["section"])))
    top = [s for s in sections if gold and (s["doc_id"], s["section"]) == gold]
    top += [s for s in ranked if s not in top][: 3 - len(top)]
    passages = [_shown(t, s) for s in top]
    t.call("search_policies", {"query": query}, "search", result=json.dumps(passages, ensure_ascii=False))
    if gold:
        first = re.split(r"(?<=[.!?])\s", passages[0]["text"].replace("**", ""), maxsplit=1)[0]
        t.say(f"{first} [{passages[0]['label']}]", GRAPH)
    else:
        t.say(prompts.NO_INFORMATION, GRAPH)


def _question(w: Words) -> tuple[str, tuple[str, str] | None]:
    if w.rng.random() < 0.75:
        doc, section, text = POLICY_QUESTIONS[w.rng.choice(_allowed(len(POLICY_QUESTIONS), w.split))]
        return text, (doc, section)
    return w.phrase(UNANSWERABLE), None


def _allowed(n: int, split: Split) -> list[int]:
    return [i for i in range(n) if split == "heldout" or i % 5 != 4]


# ---------------------------------------------------------------------------------------------------------
# Conversations.


def converse_writes(
    t: Talk,
    w: Words,
    actions: Sequence[Action],
    *,
    spec_how: str | None = None,
    decoy: Action | None = None,
) -> None:
    """One customer's write requests in one first message, done one after another as the graph does."""
    rng = w.rng
    one_pm = {a.args.get("payment_method_id") for a in actions} - {None}
    global_pm = (
        len(one_pm) == 1
        and len(actions) > 1
        and rng.random() < 0.3
        and payment_words(w.user, str(next(iter(one_pm))), None, rng) != next(iter(one_pm))
    )
    requests = [w.request(a, say_payment=not global_pm) for a in actions]
    body = _sentences([requests[0].text] + [w.phrase(ALSO) + _decap(r.text) for r in requests[1:]])
    if decoy is not None and len(actions) == 1:
        drop = w.request(decoy, say_payment=False)
        keep_words, drop_words = _short(requests[0].text, actions[0], w), _short(drop.text, decoy, w)
        body = _sentences([drop.text, w.phrase(ALSO) + _decap(requests[0].text)])
        body += w.phrase(RETRACT).format(keep=keep_words, drop=drop_words)
    if global_pm:
        pm = payment_words(w.user, str(next(iter(one_pm))), None, rng)
        body += w.phrase(ONE_PAYMENT).format(pm=pm, Pm=_cap(pm))
    # a question in the first message is searched after the writes, with that message verbatim: the graph
    # offers its customer's last three messages as queries, so only where the writes leave it among them
    question = _question(w) if len(actions) == 1 and rng.random() < 0.2 else None
    if question:
        body += " " + _cap(question[0])
    # lower case would lose the capitals of a new address and of a stated "#W..." id
    keep_case = any("address" in a.name for a in actions) or any(r.stated for r in requests)
    ident = opening(w, spec_how)
    t.user(first_message(w, ident, body, lower_ok=not keep_case))
    first_text = t.last_user()
    identify(t, w, ident)
    profile(t, w.user_id)
    needed = [a.args["order_id"] for a in actions if "order_id" in a.args]
    stated = [r.stated for r in requests if r.stated]
    orders_read: set[str] = set()
    products_read: set[str] = set()
    look_up_orders(t, w, needed, stated, orders_read)
    result: dict[str, Any] = {}
    last = actions[-1]
    for i, action in enumerate(actions):
        look_up_products(t, action, products_read)
        propose_write(t, action)
        ending = rng.random() if i == len(actions) - 1 else 1.0
        if ending < 0.08:
            t.user(w.phrase(NO))
            t.say(NOT_CONFIRMED_REPLY, "acknowledge")
            return
        if ending < 0.14:
            switched = _switch(t, w, action)
            if switched is not None:
                action = switched
                last = switched
        t.user(w.phrase(YES))
        result = execute(t, action)
    recent = [m["content"] for m in reversed(t.messages) if m["role"] == "user"][:3]
    if question and first_text in recent:
        search(t, first_text, question[1])
        return
    t.say(prompts.write_done(last.name, result), "reply")
    if question or rng.random() < 0.12:
        follow = question or _question(w)
        t.user(_cap(_noisy(rng, rng.choice(["One more question: ", "Also, ", "", "Thanks. "]) + follow[0])))
        search(t, t.last_user(), follow[1])


def _short(text: str, action: Action, w: Words) -> str:
    """The item words of a request, for "Actually, only the desk lamp"."""
    order = w.tools.orders[action.args["order_id"]]
    by_id = {i["item_id"]: i for i in order["items"]}
    names = [by_id[i] for i in action.args.get("item_ids") or [] if i in by_id]
    return _join([f"the {product_name(i)}" for i in names]) if names else "that"


def _switch(t: Talk, w: Words, action: Action) -> Action | None:
    """A change of mind at the listing: an exchange becomes a return, an item change a cancellation."""
    args = action.args
    if action.name not in {"exchange_delivered_order_items", "modify_pending_order_items"}:
        return None
    order = w.tools.orders[args["order_id"]]
    if action.name == "exchange_delivered_order_items":
        new = Action(
            "return_delivered_order_items",
            {
                "order_id": args["order_id"],
                "item_ids": list(args["item_ids"]),
                "payment_method_id": _paid(order),
            },
        )
        it = "them" if len(args["item_ids"]) > 1 else "it"
        t.user(w.phrase(SWITCH_TO_RETURN).format(it=it))
    elif action.name == "modify_pending_order_items":
        new = Action("cancel_pending_order", {"order_id": args["order_id"], "reason": "no longer needed"})
        t.user(w.phrase(SWITCH_TO_CANCEL))
    else:
        return None
    propose_write(t, new)
    return new


def converse_status(t: Talk, w: Words) -> None:
    """Where is my order: identify, profile, orders until that one, then a summary of its record."""
    order = w.rng.choice(w.orders)
    if len(w.orders) == 1 and w.rng.random() < 0.6:
        body, stated = w.phrase(STATUS_ONE), None
    else:
        fill, stated = w.mention(order)
        body = w.phrase(STATUS).format(**fill)
    ident = opening(w)
    t.user(first_message(w, ident, body, lower_ok=not stated))
    identify(t, w, ident)
    profile(t, w.user_id)
    look_up_orders(t, w, [order["order_id"]], [stated] if stated else [], set())
    t.say(order_summary(order), "answer")
    if w.rng.random() < 0.3:
        t.user(w.phrase(THANKS))
        t.say(CLOSE_REPLY, "close")


def converse_out_of_policy(t: Talk, w: Words) -> bool:
    """Cancel a delivered or processed order, return one not delivered: looked up, then a fixed reply."""
    rng = w.rng
    order = rng.choice(w.orders)
    status = str(order["status"])
    if status in {"delivered", "processed"} and rng.random() < 0.6:
        fill, stated = w.mention(order)
        body = w.phrase(CANCEL_DELIVERED).format(**fill)
        reply = (CANNOT_CANCEL_DELIVERED if status == "delivered" else CANNOT_CANCEL).format(
            order_id=order["order_id"], status=status
        )
    elif status in {"pending", "processed"}:
        fill, stated = w.mention(order, [rng.choice(order["items"])])
        body = w.phrase(RETURN_UNDELIVERED).format(**fill)
        reply = (CANNOT_RETURN_PENDING if status == "pending" else CANNOT_RETURN_PROCESSED).format(
            order_id=order["order_id"]
        )
    else:
        return False
    ident = opening(w)
    t.user(first_message(w, ident, body, lower_ok=not stated))
    identify(t, w, ident)
    profile(t, w.user_id)
    look_up_orders(t, w, [order["order_id"]], [stated] if stated else [], set())
    t.say(reply, "out_of_policy")
    return True


def converse_handoff(t: Talk, w: Words) -> bool:
    """A request for a person, or one only a person can handle: the model hands off with a summary."""
    rng = w.rng
    kind = rng.choice(sorted(HANDOFF))
    phrasings, summary, needs_order = HANDOFF[kind]
    order: dict[str, Any] | None = None
    stated: str | None = None
    if needs_order:
        delivered = [o for o in w.orders if o["status"] == "delivered"]
        if not delivered:
            return False
        order = rng.choice(delivered)
        fill, stated = w.mention(order, [rng.choice(order["items"])])
        body = w.phrase(phrasings).format(**fill)
    else:
        body = w.phrase(phrasings)
    ident = opening(w) if needs_order or rng.random() < 0.7 else Opening("skip", "")
    t.user(first_message(w, ident, body, lower_ok=not stated))
    if ident.how != "skip":
        identify(t, w, ident)
        profile(t, w.user_id)
    if order is not None:
        look_up_orders(t, w, [order["order_id"]], [stated] if stated else [], set())
    text = summary.format(order_id=order["order_id"] if order else "")
    ticket = "T-" + "".join(rng.choice("0123456789abcdef") for _ in range(8))
    t.call("transfer_to_human_agents", {"summary": text}, "handoff", result=f"ticket {ticket}")
    t.say(prompts.HANDED_OFF.format(ticket_id=ticket), GRAPH)
    return True


def converse_policy(t: Talk, w: Words) -> None:
    """A policy question (answered or not by the demo policies): searched with the message verbatim."""
    text, gold = _question(w)
    t.user(_noisy(w.rng, w.phrase(GREETINGS) + text))
    # no closing turn: before identification the graph answers anything the model replies with
    # IDENTIFY_FIRST, so a "you're welcome" is not the model's to say here
    search(t, t.last_user(), gold)


def converse_off_topic(t: Talk, w: Words, then: Callable[[], None]) -> None:
    """An off-topic message the graph answers itself (no target), then the real request."""
    t.user(w.phrase(GREETINGS) + w.phrase(OFF_TOPIC))
    t.say(prompts.OFF_TOPIC, GRAPH)
    then()


# ---------------------------------------------------------------------------------------------------------
# Scenarios over a store.


def random_actions(tools: StoreTools, rng: random.Random, user_id: str, k: int) -> list[Action]:
    """Up to `k` valid writes on different orders of one customer (demo store and extras)."""
    user = tools.users[user_id]
    actions: list[Action] = []
    order_ids = [o for o in user["orders"] if o in tools.orders]
    for oid in rng.sample(order_ids, k=min(k, len(order_ids))):
        action = _random_action(tools, rng, user, tools.orders[oid])
        if action is not None:
            actions.append(action)
    return actions


def _random_action(
    tools: StoreTools, rng: random.Random, user: dict[str, Any], order: dict[str, Any]
) -> Action | None:
    oid, items = order["order_id"], order["items"]
    methods = list(user["payment_methods"])
    paid = _paid(order) or methods[0]
    gift = [m for m in methods if m.startswith("gift_card")]

    def swap(name: str) -> Action | None:
        chosen = rng.sample(items, k=min(len(items), rng.choice([1, 1, 2])))
        pairs = []
        for item in chosen:
            product = _product_of(tools, item["item_id"])
            others = [
                v["item_id"]
                for v in product["variants"].values()
                if v["available"] and v["item_id"] != item["item_id"]
            ]
            if others:
                pairs.append((item["item_id"], rng.choice(others)))
        if not pairs:
            return None
        pm = paid if rng.random() < 0.6 else rng.choice(methods)
        args = {
            "order_id": oid,
            "item_ids": [p[0] for p in pairs],
            "new_item_ids": [p[1] for p in pairs],
            "payment_method_id": pm,
        }
        return Action(name, args)

    if order["status"] == "pending":
        kind = rng.choice(["cancel", "cancel", "modify", "modify", "payment", "address"])
        if kind == "cancel":
            return Action("cancel_pending_order", {"order_id": oid, "reason": rng.choice(list(REASONS))})
        if kind == "payment":
            others = [m for m in methods if m != paid]
            if not others:
                return None
            return Action(
                "modify_pending_order_payment", {"order_id": oid, "payment_method_id": rng.choice(others)}
            )
        if kind == "address":
            other = tools.users[rng.choice(sorted(tools.users))]["address"]
            return Action(
                "modify_pending_order_address", {"order_id": oid, **{k: other[k] for k in ADDRESS_FIELDS}}
            )
        return swap("modify_pending_order_items")
    if order["status"] == "delivered":
        if rng.random() < 0.5:
            chosen = rng.sample(items, k=min(len(items), rng.choice([1, 1, 2])))
            pm = paid if rng.random() < 0.75 or not gift else gift[0]
            args = {"order_id": oid, "item_ids": [i["item_id"] for i in chosen], "payment_method_id": pm}
            return Action("return_delivered_order_items", args)
        return swap("exchange_delivered_order_items")
    return None


def _decoy(tools: StoreTools, rng: random.Random, user_id: str, action: Action) -> Action | None:
    """Another request of the same kind on another item, which the customer takes back in the same message."""
    if action.name not in {
        "return_delivered_order_items",
        "exchange_delivered_order_items",
        "modify_pending_order_items",
    }:
        return None
    status = ELIGIBLE[action.name]
    taken = set(action.args.get("item_ids") or [])
    names = {i["name"] for i in tools.orders[action.args["order_id"]]["items"] if i["item_id"] in taken}
    user = tools.users[user_id]
    for oid in rng.sample(user["orders"], k=len(user["orders"])):
        order = tools.orders.get(oid)
        if not order or order["status"] != status:
            continue
        for item in order["items"]:
            if item["item_id"] in taken or item["name"] in names:
                continue
            if action.name == "return_delivered_order_items":
                return Action(action.name, {**action.args, "order_id": oid, "item_ids": [item["item_id"]]})
            product = _product_of(tools, item["item_id"])
            others = [
                v["item_id"]
                for v in product["variants"].values()
                if v["available"] and v["item_id"] != item["item_id"]
            ]
            if others:
                args = {
                    **action.args,
                    "order_id": oid,
                    "item_ids": [item["item_id"]],
                    "new_item_ids": [others[0]],
                }
                return Action(action.name, args)
    return None


def new_address(tools: StoreTools, rng: random.Random, user_id: str) -> Action:
    """A default-address change to another customer's address (a realistic one)."""
    other = tools.users[rng.choice(sorted(u for u in tools.users if u != user_id))]["address"]
    return Action("modify_user_address", {"user_id": user_id, **{k: other[k] for k in ADDRESS_FIELDS}})


# ---------------------------------------------------------------------------------------------------------
# Keeping the dev replays out.


@dataclass
class DevReplays:
    """What the dev replays hold: their customers' gold writes and their first messages."""

    tasks: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)  # (user id, sorted writes)
    writes: set[str] = field(default_factory=set)  # every single gold write
    first_messages: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None, orders: dict[str, Any] | None = None) -> DevReplays:
        """Parse a dev-replay JSONL (none: nothing to keep out)."""
        out = cls()
        if path is None or not path.exists():
            return out
        with path.open() as fh:
            for line in fh:
                if line.strip():
                    out.add(json.loads(line), orders or {})
        return out

    def add(self, replay: dict[str, Any], orders: dict[str, Any]) -> None:
        """Record one replay."""
        messages = [m for m in replay["messages"] if m["role"] != "system"]
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        self.first_messages.append(str(first))
        user_id: str | None = None
        writes: list[str] = []
        names: dict[str, str] = {}
        for m in messages:
            for call in m.get("tool_calls") or []:
                fn = call["function"]
                args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
                names[str(call.get("id"))] = fn["name"]
                if fn["name"] in WRITE_TOOLS:
                    writes.append(write_key(fn["name"], args))
                    oid = args.get("order_id")
                    user_id = user_id or args.get("user_id") or (orders.get(oid) or {}).get("user_id")
            if m["role"] == "tool" and names.get(str(m.get("tool_call_id"))) in {
                "find_user_id_by_email",
                "find_user_id_by_name_zip",
            }:
                found = str(m.get("content") or "").strip()
                if found and not found.startswith("Error"):
                    user_id = found
        self.writes.update(writes)
        if user_id is not None:
            self.tasks.add((user_id, tuple(sorted(writes))))

    def same_task(self, user_id: str, actions: Sequence[Action]) -> bool:
        """Whether a dev replay has exactly this customer's gold writes."""
        return (user_id, tuple(sorted(write_key(a.name, a.args) for a in actions))) in self.tasks

    def shares_write(self, actions: Sequence[Action]) -> bool:
        """Whether one of these gold writes is a dev replay's gold write."""
        return any(write_key(a.name, a.args) in self.writes for a in actions)

    def near(self, text: str) -> bool:
        """Whether a first message equals or nearly equals a dev replay's first message."""
        return any(text == f or jaccard(text, f) > NEAR_DUPLICATE for f in self.first_messages)


def write_key(name: str, args: dict[str, Any]) -> str:
    """A canonical text of one write (name and arguments)."""
    return json.dumps([name, args], sort_keys=True)


# ---------------------------------------------------------------------------------------------------------
# Checking a conversation against the graph's choices.


def graph_refusal(record: dict[str, Any]) -> str | None:
    """The first target the graph would not allow (`agent.choices.derive` at that step), else None."""
    messages = [m for m in record["messages"] if m["role"] != "system"]
    cats = {int(k) - 1: v for k, v in record["metadata"]["step_categories"].items()}
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or cats.get(i) == GRAPH:
            continue
        history = messages[:i]
        possible = choices.derive(history, guided=False)  # the safe set (guidance narrows it at run time)
        calls = message.get("tool_calls") or []
        if not calls:
            refused = _reply_refusal(history, possible, str(message.get("content") or ""))
            if refused:
                return f"step {i}: {refused}"
            continue
        fn = calls[0]["function"]
        call = ToolCall(fn["name"], json.loads(fn["arguments"]))
        if not possible.admits(call):
            return f"step {i}: {fn['name']} {fn['arguments'][:120]} not allowed"
    for i, message in enumerate(messages):
        if (
            cats.get(i) == GRAPH
            and message.get("tool_calls")
            and message["tool_calls"][0]["function"]["name"] in WRITE_TOOLS
        ):
            before = next(m for m in reversed(messages[:i]) if m["role"] == "user")
            if not is_explicit_yes(before["content"]):
                return f"step {i}: executed without an explicit yes"
    return None


def _reply_refusal(history: list[dict[str, Any]], possible: choices.Choices, text: str) -> str | None:
    """Why a text target is not what the graph would say here (it says its own line where it decides)."""
    if not possible.reply:
        return "reply not possible"
    if choices.read_facts(history).user_id is None:
        return None if text == prompts.IDENTIFY_FIRST else "reply before identification"
    if text == prompts.IDENTIFY_FIRST:
        return "identify-first reply after identification"
    if not possible.reply_text:
        done = next(m for m in reversed(history) if m["role"] == "tool")
        call = next(
            c["function"]
            for m in history
            for c in m.get("tool_calls") or []
            if c["id"] == done.get("tool_call_id")
        )
        if text != prompts.write_done(call["name"], json.loads(done["content"])):
            return "reply after a write is not the graph's write_done"
    return None


# ---------------------------------------------------------------------------------------------------------
# The recipe.


@dataclass
class PeopleReport:
    """What a `people` synthesis made and what it left out."""

    written: Counter[str] = field(default_factory=Counter)  # conversations by scenario
    specs: int = 0
    dropped_same_writes: int = 0  # specs whose gold writes equal a dev replay's
    dropped_shared_write: int = 0  # specs sharing at least one gold write with a dev replay (not equal)
    skipped_specs: int = 0  # specs the graph could not follow (unknown order, write it would refuse)
    noop_swaps_removed: int = 0  # gold swap pairs whose new item is the old one (the graph never offers them)
    redrawn_near_dev: int = 0  # first messages too close to a dev replay's, drawn again
    redrawn_refused: int = 0  # conversations with a target the graph would refuse, drawn again
    refusals: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "written": sum(self.written.values()),
            "by_scenario": dict(sorted(self.written.items())),
            "task_specs": self.specs,
            "dropped_same_writes_as_dev": self.dropped_same_writes,
            "dropped_sharing_a_dev_write": self.dropped_shared_write,
            "skipped_specs": self.skipped_specs,
            "noop_swap_pairs_removed": self.noop_swaps_removed,
            "redrawn_near_dev_first_message": self.redrawn_near_dev,
            "redrawn_refused_by_graph": self.redrawn_refused,
            "refusals": dict(self.refusals.most_common(10)),
        }


class _Maker:
    """Draws conversations over one store, checks them and keeps count."""

    def __init__(
        self, tools: StoreTools, *, split: Split, seed: str, dev: DevReplays, report: PeopleReport
    ) -> None:
        self.tools, self.split, self.dev, self.report = tools, split, dev, report
        self.rng = random.Random(f"people-{split}-{seed}")
        self.seed = seed
        self.users = sorted(u for u, rec in tools.users.items() if rec.get("orders"))
        self.made = 0

    def draw(
        self, scenario: str, build: Callable[[Talk, Words], bool | None], user_id: str
    ) -> dict[str, Any] | None:
        """One checked conversation (up to four draws), or None."""
        for _ in range(4):
            t = Talk(rng=self.rng, split=self.split, tools=self.tools)
            w = Words(self.tools, user_id, self.rng, self.split)
            if build(t, w) is False:
                return None
            first = next(m["content"] for m in t.messages if m["role"] == "user")
            if self.dev.near(first):
                self.report.redrawn_near_dev += 1
                continue
            rec = _record(t, f"people-{self.split}-{self.seed}-{self.made:05d}", scenario)
            refusal = graph_refusal(rec)
            if refusal is not None:
                self.report.redrawn_refused += 1
                self.report.refusals[refusal.split(": ", 1)[-1].split(" ", 1)[0]] += 1
                continue
            self.made += 1
            self.report.written[scenario] += 1
            return rec
        return None

    def extra(self) -> dict[str, Any] | None:
        """A non-task scenario over a random customer of this store."""
        user_id = self.rng.choice(self.users)
        scenario = self.rng.choices(
            ["status", "policy", "handoff", "out_of_policy", "user_address", "off_topic"],
            weights=[22, 22, 18, 20, 10, 8],
        )[0]
        if scenario == "status":
            return self.draw(scenario, lambda t, w: converse_status(t, w), user_id)
        if scenario == "policy":
            return self.draw(scenario, lambda t, w: converse_policy(t, w), user_id)
        if scenario == "handoff":
            return self.draw(scenario, converse_handoff, user_id)
        if scenario == "out_of_policy":
            return self.draw(scenario, converse_out_of_policy, user_id)
        if scenario == "user_address":
            action = new_address(self.tools, self.rng, user_id)
            return self.draw(scenario, lambda t, w: converse_writes(t, w, [action]), user_id)

        def off_topic(t: Talk, w: Words) -> None:
            converse_off_topic(t, w, lambda: converse_status(t, w))

        return self.draw(scenario, off_topic, user_id)

    def writes(
        self, user_id: str, actions: list[Action], spec_how: str | None, scenario: str
    ) -> dict[str, Any] | None:
        """A write conversation, sometimes with a request taken back in the same message."""
        decoy = (
            _decoy(self.tools, self.rng, user_id, actions[0])
            if len(actions) == 1 and self.rng.random() < 0.15
            else None
        )
        return self.draw(
            scenario, lambda t, w: converse_writes(t, w, actions, spec_how=spec_how, decoy=decoy), user_id
        )


def _record(t: Talk, conv_id: str, scenario: str) -> dict[str, Any]:
    rec = synth_record(t, conv_id, RECIPE)
    rec["metadata"]["scenario"] = scenario
    return rec


def without_noop_swaps(actions: Sequence[Action]) -> tuple[list[Action], int]:
    """The actions without swap pairs that keep the same item (some specs list one; the end state is the
    same without it, and the graph only offers other variants); actions left with no pair are dropped."""
    out: list[Action] = []
    removed = 0
    for action in actions:
        if not action.args.get("new_item_ids"):
            out.append(action)
            continue
        pairs = [(o, n) for o, n in zip(action.args["item_ids"], action.args["new_item_ids"], strict=True)]
        kept = [(o, n) for o, n in pairs if o != n]
        removed += len(pairs) - len(kept)
        if kept:
            args = {**action.args, "item_ids": [o for o, _ in kept], "new_item_ids": [n for _, n in kept]}
            out.append(Action(action.name, args))
    return out, removed


def _spec_how(instruction: str) -> str:
    return "email" if "your email is" in instruction.lower() else "name"


def synth_people(
    n: int,
    *,
    data_dir: Path | None = None,
    split: Split = "train",
    seed: int = 0,
    report: PeopleReport | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield about `n` conversations: task specs and extras over the retail folder (when it is there),
    the rest over the demo store. Dev replays in `data_dir` are kept out."""
    report = report if report is not None else PeopleReport()
    tasks_file = data_dir / "tasks_train.json" if data_dir is not None else None
    n_tasks = n_extra = 0
    if tasks_file is not None and tasks_file.exists() and data_dir is not None:
        n_tasks, n_extra = round(n * TASK_SHARE), round(n * RETAIL_EXTRA_SHARE)
        store = load_retail(data_dir)
        dev = DevReplays.load(data_dir / "dev_replays.jsonl", store["orders"])
        maker = _Maker(PeopleTools(store), split=split, seed=f"tasks-{seed}", dev=dev, report=report)
        yield from _task_conversations(maker, data_dir, n_tasks, split)
        for _ in range(n_extra * 2):
            if maker.made >= n_tasks + n_extra:
                break
            rec = maker.extra()
            if rec is not None:
                yield rec
    from agent.store.seed import generate_demo_data

    demo = generate_demo_data(seed=TRAIN_STORE_SEED if split == "train" else HELDOUT_STORE_SEED)
    maker = _Maker(PeopleTools(demo), split=split, seed=f"demo-{seed}", dev=DevReplays(), report=report)
    n_demo = n - sum(report.written.values())
    for _ in range(n_demo * 3):
        if maker.made >= n_demo:
            break
        if maker.rng.random() < 0.6:
            user_id = maker.rng.choice(maker.users)
            actions = random_actions(maker.tools, maker.rng, user_id, maker.rng.choice([1, 1, 1, 2, 2, 3]))
            rec = maker.writes(user_id, actions, None, "demo_writes") if actions else None
        else:
            rec = maker.extra()
        if rec is not None:
            yield rec


def _task_conversations(maker: _Maker, data_dir: Path, n: int, split: Split) -> Iterator[dict[str, Any]]:
    """Renderings of the task specs of this split, cycling through them until `n` conversations."""
    tools, dev, report = maker.tools, maker.dev, maker.report
    specs: list[tuple[int, str, list[Action], str]] = []
    for index, task in task_specs(data_dir, split=split):
        report.specs += 1
        actions = [Action(a["name"], a["arguments"]) for a in task["actions"] if a["name"] in WRITE_TOOLS]
        if dev.same_task(task["user_id"], actions):
            report.dropped_same_writes += 1
            continue
        if dev.shares_write(actions):
            report.dropped_shared_write += 1
            continue
        actions, noops = without_noop_swaps(actions)
        report.noop_swaps_removed += noops
        if not actions:
            report.skipped_specs += 1
            continue
        if any(a.args.get("order_id", "#") not in tools.orders for a in actions if "order_id" in a.args):
            report.skipped_specs += 1
            continue
        specs.append((index, task["user_id"], actions, _spec_how(task["instruction"])))
    alive = list(range(len(specs)))
    failures: Counter[int] = Counter()
    made = 0
    while made < n and alive:
        for index in list(alive):
            if made >= n:
                break
            spec_index, user_id, actions, how = specs[index]
            rec = maker.writes(user_id, list(actions), how, "task_writes")
            if rec is not None:
                rec["metadata"]["task_index"] = spec_index
            if rec is None:
                failures[index] += 1
                if failures[index] >= 2:
                    alive.remove(index)
                    report.skipped_specs += 1
                continue
            made += 1
            yield rec
