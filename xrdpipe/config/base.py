"""What every config model shares: frozen models, and one wording of validation errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Frozen(BaseModel):
    """A frozen config model: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per error, ``where = value: what is allowed``, under the catalog's name."""
    lines = [f"invalid catalog {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error":
            allowed = err.get("ctx", {}).get("expected", "")
            msg = f"allowed values: {allowed}"
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {where} = {shown}: {msg}")
    return "\n".join(lines)
