"""Write ``docs/alerts-schema.json`` (the Alert JSON schema, the alerts-topic contract).

Run: ``python -m sinks.schema_export`` (a test fails when the file is out of date).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from stream.alert import Alert

__all__ = ["alerts_schema_text", "main", "settings_table"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "alerts-schema.json"


def alerts_schema_text() -> str:
    schema = Alert.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode() + "\n"


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else DOC
    path.write_text(alerts_schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def settings_table() -> str:
    """Markdown table of every ``sinks.*`` key (default, description), for docs/sinks.md."""
    from pydantic import BaseModel

    from .settings import SinksSettings

    def rows(model: type[BaseModel], prefix: str) -> list[str]:
        out: list[str] = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += rows(ann, f"{prefix}{name}.")
                continue
            d = f.default_factory() if f.default_factory is not None else f.default
            if hasattr(d, "get_secret_value"):
                d = "***"
            shown = "" if d is None else (f'`"{d}"`' if isinstance(d, str) else f"`{d}`")
            out.append(f"| `{prefix}{name}` | {shown} | {f.description} |")
        return out

    return "\n".join(["| key | default | description |", "|---|---|---|",
                      *rows(SinksSettings, "sinks.")]) + "\n"
