"""Fuzzing of the configuration loader: any YAML document (random structures over the real
key names, random text, YAML-specific hostile constructs) gives a Settings object or a
ConfigError -- never another exception -- and so do the collector and sinks sections."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from collectors.settings import CollectorSettings, collector_settings
from sinks.settings import SinksSettings
from stream.errors import ConfigError
from stream.settings import Settings, load_settings

from ._strategies import FUZZ, SMALL, json_values


def _keys(model, prefix=()) -> list[tuple]:
    out = []
    for name, f in model.model_fields.items():
        out.append(prefix + (name,))
        ann = f.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and hasattr(cand, "model_fields"):
                out.extend(_keys(cand, prefix + (name,)))
    return out


PATHS = (_keys(Settings) + [("collector",) + k for k in _keys(CollectorSettings)]
         + [("sinks",) + k for k in _keys(SinksSettings)])
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                         st.sampled_from(["127.0.0.1:9092", "SASL_SSL", "scram-sha-512", "high",
                                          "0.0.0.0", "-1", "1e999", "postgresql://u:p@h/d",
                                          "10.0.0.0/33", "~", "yes", "no"]))


@st.composite
def config_docs(draw) -> dict:
    """A nested mapping built along real setting paths, with values of any type."""
    doc: dict = {}
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=8)):
        node = doc
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[path[-1]] = draw(st.one_of(yaml_scalars, json_values))
    if draw(st.booleans()):
        doc[draw(st.text(max_size=10))] = draw(yaml_scalars)     # an unknown key somewhere
    return doc


def _load(tmp_path, text: str | bytes):
    p = tmp_path / "c.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        s = load_settings(p)
    except ConfigError as e:
        assert str(e) and e.location
        return None
    assert isinstance(s, Settings)
    for validate in (lambda: collector_settings(s), lambda: SinksSettings.from_root(s)):
        try:
            validate()
        except ConfigError as e:
            assert str(e)
    return s


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("ITDR_"):
            monkeypatch.delenv(k)


@FUZZ
@given(config_docs())
def test_structured_random_configs(tmp_path_factory, doc):
    _load(tmp_path_factory.mktemp("c"), yaml.safe_dump(doc, allow_unicode=True))


@SMALL
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.lists(st.sampled_from(["kafka:", "  ", "- ", "&a", "*a", "!!", "{", "}",
                                           "[", "]", ":", "\n", "sinks:", "detection:", "'",
                                           '"', "#", "%YAML 1.1", "---", "...", "? ", "|"]),
                          max_size=30).map("".join)))
def test_random_yaml_text(tmp_path_factory, text):
    _load(tmp_path_factory.mktemp("t"), text)


HOSTILE_YAML = {
    "python_object_tag": "kafka: !!python/object/apply:os.system ['echo pwned']\n",
    "python_name_tag": "kafka: !!python/name:os.system\n",
    "alias_bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "detection: {disabled: *i}\n",
    "alias_bomb_in_any_section": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "collector: {paths: *i}\n",
    "recursive_alias": "kafka: &k {extra: *k}\n",
    "not_utf8": b"kafka:\n  bootstrap_servers: \xff\xfe\n",
    "multi_document": "kafka: {}\n---\nkafka: {}\n",
    "top_level_list": "- kafka\n",
    "complex_key_no_name": "?\n",
    "integer_key": "1: kafka\n",
    "huge_int": "topics: {partitions: " + "9" * 5000 + "}\n",
    "nan_and_inf": "detection: {learning_days: .nan, lateness_s: .inf}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_yaml(tmp_path, name, capfd):
    t0 = time.perf_counter()
    s = _load(tmp_path, HOSTILE_YAML[name])
    assert time.perf_counter() - t0 < 5, name
    if name.startswith("python_"):
        assert s is None                                  # refused, never constructed
        assert "pwned" not in capfd.readouterr().out
    if name in ("not_utf8", "multi_document", "top_level_list", "huge_int", "nan_and_inf",
                "recursive_alias", "alias_bomb", "complex_key_no_name", "integer_key"):
        assert s is None, name


def test_config_path_is_a_directory_or_unreadable(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
