"""Run configuration that reads plainly in the launchpad.

Dagster's pythonic ``Config`` types every ``int``/``str``/``bool`` field as "Int | {env: String}"
(a field that may come from an environment variable), which is noise for a research knob. Our
knobs are plain pydantic models instead; ``config_schema(Model)`` gives the asset a config schema
with plain types, the model's defaults and descriptions (constraints appended), and
``parse(Model, context)`` validates the run's values with pydantic, failing with a message that
names the field.

A knob with a lib counterpart is declared once, in the lib parameter dataclass, with
``lib.knobs.knob(default, description, ge=..., ...)``. The Config model is decorated
``@mirrors(Params)``, which adds one field per knob (name, type, default, description and bounds
as the dataclass declares them); the model itself declares only the run's other fields, and
those a run states in other units or under another name (``rename=``, ``convert=``), whose
``Field(default=...)`` reads the dataclass's default. ``lib_params(config, Params)`` builds the
dataclass from the run's values. A Config that declares a knob again, or a default that differs
from the dataclass's, fails at import.

    class FilterConfig(BaseModel):
        min_days: int = Field(60, ge=1, le=90, description="Window length in sessions.")

    @asset(config_schema=config_schema(FilterConfig))
    def daily_filtered(context, ...):
        cfg = parse(FilterConfig, context)
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from dagster import Array, Bool, Failure, Field, Float, Int, Map, Noneable, String
from pydantic import BaseModel, ValidationError, create_model
from pydantic import Field as PydanticField
from pydantic_core import PydanticUndefined

from quant_assets.lib.knobs import knobs_of

_PLAIN = {int: Int, float: Float, bool: Bool, str: String}


def _dagster_type(annotation: Any):
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in _PLAIN:
        return _PLAIN[annotation]
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        if len(kinds) == 1 and next(iter(kinds)) in _PLAIN:
            return _PLAIN[next(iter(kinds))]
    if origin in (list, tuple, typing.Sequence) or (origin is not None and origin.__name__ in ("Sequence", "list")):
        return Array(_dagster_type(args[0]))
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return Noneable(_dagster_type(inner))
    if origin in (dict, typing.Mapping) and args and args[0] is str:
        return Map(str, _dagster_type(args[1]))
    raise TypeError(f"no plain Dagster config type for {annotation!r}")


def _constraints(field) -> str:
    bits = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                whole = isinstance(value, float) and value.is_integer()
                bits.append(f"{sign} {int(value) if whole else value}")  # "<= 1" whether declared 1 or 1.0
    if typing.get_origin(field.annotation) is typing.Literal:
        bits.append("one of " + ", ".join(repr(a) for a in typing.get_args(field.annotation)))
    return f" ({'; '.join(bits)})" if bits else ""


def fraction(default: float, description: str) -> Any:
    """A Config field that is a share, from 0 to 1 inclusive."""
    return PydanticField(default=default, ge=0.0, le=1.0, description=description)


def config_schema(model: type[BaseModel]) -> dict[str, Field]:
    """A Dagster config schema mirroring ``model``: plain types, its defaults and descriptions."""
    schema = {}
    for name, field in model.model_fields.items():
        has_default = field.default is not PydanticUndefined or field.default_factory is not None
        default = field.get_default(call_default_factory=True) if has_default else None
        description = (field.description or "") + _constraints(field)
        kwargs = {"description": description}
        if has_default:
            if isinstance(default, tuple):
                default = list(default)
            kwargs["default_value"] = default
        else:
            kwargs["is_required"] = True
        schema[name] = Field(_dagster_type(field.annotation), **kwargs)
    return schema


M = typing.TypeVar("M", bound=BaseModel)


def validate(model: type[M], values: dict[str, Any] | None) -> M:
    """``model`` from run-config values; a ``Failure`` naming each bad field otherwise."""
    try:
        return model.model_validate(values or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Failure(description=f"invalid {model.__name__}: {problems}") from None


def parse(model: type[M], context) -> M:
    """The validated config of the running asset (or op)."""
    op_context = getattr(context, "op_execution_context", context)
    return validate(model, op_context.op_config)


@dataclasses.dataclass(frozen=True)
class Mirror:
    """A Config model whose knobs are the fields of a lib parameter dataclass: the dataclass
    holds the defaults (the Config's ``Field(default=...)`` reads them), ``rename`` maps a
    Config field to a differently named dataclass field and ``convert`` turns a Config value
    into the dataclass's units."""

    config: type[BaseModel]
    params: type
    rename: Mapping[str, str]
    convert: Mapping[str, Callable[[Any], Any]]

    def pairs(self) -> dict[str, str]:
        """Config field -> dataclass field, for every knob they share."""
        lib = {f.name for f in dataclasses.fields(self.params)}
        out = {c: self.rename.get(c, c) for c in self.config.model_fields}
        return {c: p for c, p in out.items() if p in lib}

    def value(self, name: str, value: Any) -> Any:
        value = self.convert[name](value) if name in self.convert else value
        return tuple(value) if isinstance(value, list) else value

    def build(self, config: BaseModel):
        """The dataclass with the config's values (its own defaults for knobs the Config lacks)."""
        return self.params(**{p: self.value(c, getattr(config, c)) for c, p in self.pairs().items()})

    def disagreements(self) -> dict[str, tuple[Any, Any]]:
        """{config field: (Config default in lib units, lib default)} where they differ."""
        out = {}
        for c, p in self.pairs().items():
            field = self.config.model_fields[c]
            mine = self.value(c, field.get_default(call_default_factory=True))
            theirs = lib_default(self.params, p)
            theirs = tuple(theirs) if isinstance(theirs, list) else theirs
            if mine != theirs:
                out[c] = (mine, theirs)
        return out


MIRRORS: list[Mirror] = []


def lib_default(params: type, name: str) -> Any:
    """The default of field ``name`` of the lib dataclass ``params``."""
    for f in dataclasses.fields(params):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{params.__name__}.{name} has no default")
    raise AttributeError(f"{params.__name__} has no field {name!r}")


def _model_annotation(hint: Any) -> Any:
    """A dataclass field's type as a Config field's: sequences are lists, mappings dicts."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is collections.abc.Sequence:
        return list[args]
    if origin is collections.abc.Mapping:
        return dict[args]
    return hint


def _with_knobs(config: type[BaseModel], params: type, taken: set[str]) -> type[BaseModel]:
    """``config`` with one field per knob of ``params`` (a subclass under the same name), or
    ``config`` itself when ``params`` declares no knob."""
    declared = knobs_of(params)
    again = sorted(taken & set(declared))
    if again:
        raise TypeError(f"{config.__name__} declares {again} again: they are knobs of {params.__name__}, declared there")
    hints = typing.get_type_hints(params)
    fields = {}
    for name, spec in declared.items():
        default = lib_default(params, name)
        default = list(default) if isinstance(default, tuple) else default
        fields[name] = (_model_annotation(hints[name]), PydanticField(default=default, description=spec["description"], **spec["bounds"]))
    if not fields:
        return config
    return create_model(
        config.__name__, __base__=config, __module__=config.__module__, __qualname__=config.__qualname__, __doc__=config.__doc__, **fields
    )


def mirrors(params: type, *, rename: Mapping[str, str] | None = None, convert: Mapping[str, Callable[[Any], Any]] | None = None):
    """Class decorator: the Config offers ``params``'s knobs (see the module's docstring and
    :class:`Mirror`); a knob declared again, or a default that differs from the dataclass's,
    fails at import, naming the knob."""

    def wrap(config: type[BaseModel]) -> type[BaseModel]:
        rename_ = dict(rename or {})
        unknown = sorted(set(rename_) - set(config.model_fields))
        if unknown:
            raise TypeError(f"{config.__name__}: rename names unknown fields {unknown}")
        config = _with_knobs(config, params, {rename_.get(c, c) for c in config.model_fields})
        mirror = Mirror(config, params, rename_, dict(convert or {}))
        bad = mirror.disagreements()
        if bad:
            raise TypeError(f"{config.__name__} defaults differ from {params.__name__}'s: {bad}")
        MIRRORS.append(mirror)
        return config

    return wrap


def lib_params(config: BaseModel, params: type):
    """``params`` (a lib dataclass the Config mirrors) built from the config's values."""
    lineage = type(config).__mro__
    found = [m for m in MIRRORS if m.params is params and m.config in lineage]
    if not found:
        raise TypeError(f"{type(config).__name__} does not mirror {params.__name__}")
    return min(found, key=lambda m: lineage.index(m.config)).build(config)
