"""docker-compose.yml against the Compose specification's JSON schema, plus what the schema cannot say.

The schema file is compose_spec.json as shipped in the `docker-compose` 1.29.2 package on PyPI
(tests/serve/data/compose_spec.json), so the test needs no network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from serve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification_schema() -> None:
    schema = json.loads((Path(__file__).parent / "data" / "compose_spec.json").read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(_compose()), key=str)
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5]]


def test_services_are_wired_as_documented() -> None:
    services = _compose()["services"]
    assert {"qdrant", "vllm", "api", "postgres"} <= set(services)
    for name in ("qdrant", "vllm", "api", "postgres"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"

    qdrant = services["qdrant"]
    assert qdrant["image"].startswith("qdrant/qdrant:")
    assert any(v.endswith(":/qdrant/storage") for v in qdrant["volumes"])

    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    args = vllm["command"]
    assert "--enable-lora" in args and "--enable-auto-tool-choice" in args
    assert "hermes" in args[args.index("--tool-call-parser") + 1]  # SmolLM2's <tool_call> format
    lora_name = args[args.index("--lora-modules") + 1].split("=")[0]
    gpu = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"

    api = services["api"]
    assert api["build"]["dockerfile"] == "Dockerfile" and (ROOT / "Dockerfile").is_file()
    assert api["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert api["depends_on"]["vllm"]["condition"] == "service_healthy"
    env = api["environment"]
    assert env["SPECIALIST_RETRIEVAL__QDRANT_URL"] == "http://qdrant:6333"
    assert env["SPECIALIST_MODEL__OPENAI_BASE_URL"] == "http://vllm:8000/v1"
    assert env["SPECIALIST_MODEL__OPENAI_MODEL"] == lora_name  # served until a run is promoted
    # A promotion makes vLLM load <runs>/<run>/export/adapter: the runs volume must have one path in both.
    runs_dir = env["SPECIALIST_FINETUNE__RUNS_DIR"]
    assert f"runs:{runs_dir}" in api["volumes"] and f"runs:{runs_dir}:ro" in vllm["volumes"]
    assert services["postgres"]["profiles"] == ["postgres"]


def test_api_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _compose()["services"]["api"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.retrieval.backend == "server" and settings.model.backend == "openai"
    assert settings.serve.host == "0.0.0.0"
    nested = {k.split("__")[0].removeprefix("SPECIALIST_").lower() for k in env}
    assert nested <= set(Settings.model_fields), "unknown settings section in the compose environment"
    for key in env:
        section, field = key.removeprefix("SPECIALIST_").lower().split("__")
        assert field in type(getattr(settings, section)).model_fields, f"{key} is not a setting"


def test_every_compose_variable_is_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE))
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"


def test_dockerfile_installs_like_make_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "RUN make install" in text
    assert '".venv/bin/specialist", "serve"' in text
    assert "HF_HUB_OFFLINE=1" in text
