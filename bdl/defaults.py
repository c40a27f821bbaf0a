"""The one home of every setting's default: the workflow's config schema (``workflow/schemas/config.schema.yaml``).
Stage flags take their defaults from here, so a stage run by hand trains what the workflow would train with
the same keys left out (a test compares every stage flag with its key). No torch."""

import functools
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def default(key: str):
    """The schema's default of a dotted config key, e.g. ``default("segmenter.lr")``."""
    node = schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"]


def schema_defaults(node: dict | None = None):
    """The full default config: each object's properties filled from their 'default'."""
    node = schema() if node is None else node
    if node.get("type") == "object" and "properties" in node:
        return {k: schema_defaults(v) for k, v in node["properties"].items()}
    return node.get("default")


def merged(defaults: dict, user: dict) -> dict:
    """``user``'s keys over ``defaults``, block by block (a config file overrides only what it names)."""
    out = dict(defaults)
    for k, v in user.items():
        out[k] = merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def on_off(value) -> str:
    """A true/false/auto config value as the stages' on/off/auto flag value."""
    return {True: "on", False: "off"}.get(value, value)


def switch(key: str) -> str:
    """A true/false/auto config key's default as the stages' flag value."""
    return on_off(default(key))
