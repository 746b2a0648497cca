"""Engineers' side: transcripts to datasets, SFT/DPO with LoRA, eval gate, model registry."""
