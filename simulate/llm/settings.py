"""How to reach models: endpoint, key, limits, cache and prices, from flags, a file or the env.

    settings = LLMSettings.resolve("simulate.yaml", base_url=flag_or_none)
    settings.for_role("judge")      # the judge's own section over the shared settings

Explicit values win over the config file, which wins over the environment (`OPENAI_API_KEY`,
`OPENAI_BASE_URL`, `SIMULATE_CACHE_DIR`). A config file names the variable that holds the key
(`api_key_env`) and never holds the key itself. The key is a `SecretStr`, left out of every dump.

Each role may have an endpoint of its own: a section `user:`, `agent:`, `judge:` or `generator:`
in the file (base_url, api_key_env, model, limits, prices) and a flag per role
(`--user-base-url`...). A role's base URL is, first found: its flag, `--base-url`, its section,
the file's `base_url`, OPENAI_BASE_URL. The agent's section serves both a model Simulate plays
as the agent (`--target openai:`) and the agent's own calls through the model proxy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from simulate.errors import ConfigError, did_you_mean
from simulate.llm import LLMRole
from simulate.llm.usage import Price, builtin_prices
from simulate.loader import read_yaml

OPENAI_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"
"""Sent to endpoints other than api.openai.com when no key is given (vLLM, Ollama take any)."""


EndpointRole = Literal["user", "agent", "judge", "generator"]
"""The roles that may each have an endpoint of their own."""
ENDPOINT_ROLES: tuple[EndpointRole, ...] = get_args(EndpointRole)


def endpoint_role(role: LLMRole) -> EndpointRole:
    """The endpoint section a role's calls use: `target` (Simulate playing the agent) is `agent`."""
    return "agent" if role == "target" else role


def default_cache_dir() -> Path:
    """The user's cache folder for Simulate, e.g. ~/.cache/simulate (not created here)."""
    return platformdirs.user_cache_path("simulate", appauthor=False)


class RoleEndpoint(BaseModel):
    """One role's own endpoint settings; None leaves the shared setting in place."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    """The role's OpenAI-compatible endpoint."""
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    """The role's key (read from its section's `api_key_env`); never dumped."""
    timeout_s: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    retry_backoff_s: float | None = Field(None, ge=0)
    max_concurrency: int | None = Field(None, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    prices: dict[str, Price] = Field(default_factory=dict)
    """Model -> price for this role's calls, over the shared table."""


class LLMSettings(BaseModel):
    """Everything an `OpenAILLM` needs besides its model name; shared by the LLMs of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    """An OpenAI-compatible endpoint, e.g. http://localhost:8000/v1; None is api.openai.com."""
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    """The key; never dumped, logged, hashed into cache keys or put in error messages."""
    timeout_s: float = Field(60.0, gt=0)
    """Seconds one HTTP request may take before it is retried."""
    max_retries: int = Field(5, ge=0)
    """Retries after a 429, 5xx, timeout, dropped connection or garbled 200 reply."""
    retry_backoff_s: float = Field(0.5, ge=0)
    """First wait before a retry (unless the server sent Retry-After); doubles up to 8 s."""
    max_concurrency: int = Field(64, ge=1)
    """Requests in flight at once, per LLM."""
    requests_per_minute: float | None = Field(None, gt=0)
    """Spread requests evenly to at most this rate, per LLM; None: no limit."""
    cache_dir: Path = Field(default_factory=default_cache_dir)
    """Folder of the completion cache (`llm-cache.sqlite`)."""
    use_cache: bool = True
    """Read and write the completion cache."""
    replay_only: bool = False
    """Answer only from the cache; a miss is an error instead of a request."""
    prices: dict[str, Price] = Field(default_factory=builtin_prices)
    """Model -> USD per million tokens, for cost estimates and budgets."""
    models: dict[LLMRole, str] = Field(default_factory=dict)
    """A default model per role (user, target, agent, judge, generator)."""
    roles: dict[EndpointRole, RoleEndpoint] = Field(default_factory=dict)
    """Per-role endpoints over the settings above (config sections, `--user-base-url`...)."""

    @model_validator(mode="after")
    def _replay_needs_cache(self) -> LLMSettings:
        if self.replay_only and not self.use_cache:
            raise ValueError("replay_only answers from the cache, so it needs use_cache")
        return self

    @property
    def endpoint(self) -> str:
        """The base URL requests go to."""
        return self.base_url or OPENAI_URL

    @property
    def host(self) -> str:
        """The endpoint's host and port, for messages (no credentials, no path)."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or self.endpoint
        return f"{host}:{parts.port}" if parts.port else host

    def for_role(self, role: LLMRole) -> LLMSettings:
        """The settings one role's LLMs use: its own endpoint section over the shared settings."""
        section = self.roles.get(endpoint_role(role))
        if section is None:
            return self
        update: dict[str, Any] = {
            name: getattr(section, name)
            for name in RoleEndpoint.model_fields
            if name != "prices" and getattr(section, name) is not None
        }
        update["prices"] = {**self.prices, **section.prices}
        update["roles"] = {}
        return self.model_copy(update=update)

    def client_key(self) -> str:
        """The key to send: the given one, or a placeholder for endpoints other than OpenAI's.

        Raises:
            ConfigError: no key is given and the endpoint is api.openai.com.
        """
        if self.api_key is not None and self.api_key.get_secret_value():
            return self.api_key.get_secret_value()
        if self.host == "api.openai.com":
            raise ConfigError(
                "no API key: set OPENAI_API_KEY (or name the variable that holds it with"
                " `api_key_env` in the config file); for a local server (vLLM, Ollama) set"
                " OPENAI_BASE_URL or --base-url instead"
            )
        return PLACEHOLDER_KEY

    @classmethod
    def resolve(
        cls,
        config: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        role_base_urls: Mapping[EndpointRole, str | None] | None = None,
        **given: Any,
    ) -> LLMSettings:
        """Settings from explicit values, then a config file, then the environment.

        Args:
            config: a YAML config file (`base_url`, `api_key_env`, `timeout_s`, `max_retries`,
                `max_concurrency`, `requests_per_minute`, `prices`, `models`, and sections
                `user`, `agent`, `judge`, `generator` of the same settings plus `model`), or None.
            env: the environment to read; defaults to `os.environ`.
            role_base_urls: a base URL per role (`--user-base-url`...); None means not given.
            given: explicit values of `LLMSettings` fields (flags); None means not given.
                `prices` and `models` are merged over the file's, which are merged over the
                built-in prices. A given `base_url` also overrides the file's sections'.

        Raises:
            ConfigError: the file is wrong or holds a key, or a value is out of range.
        """
        env = os.environ if env is None else env
        unknown = set(given) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"unknown LLMSettings fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, var in (
            ("base_url", "OPENAI_BASE_URL"),
            ("api_key", "OPENAI_API_KEY"),
            ("cache_dir", "SIMULATE_CACHE_DIR"),
        ):
            if env.get(var):
                values[name] = env[var]
        prices: dict[str, Any] = dict(builtin_prices())
        models: dict[LLMRole, str] = {}
        roles: dict[EndpointRole, dict[str, Any]] = {}
        layers = [_read_config(Path(config), env)] if config is not None else []
        layers.append({k: v for k, v in given.items() if v is not None})
        for layer in layers:
            prices.update(layer.pop("prices", None) or {})
            models.update(layer.pop("models", None) or {})
            for role, section in (layer.pop("roles", None) or {}).items():
                roles.setdefault(role, {}).update(section)
            values.update(layer)
        if given.get("base_url") is not None:  # the flag beats the file's sections
            for section in roles.values():
                section.pop("base_url", None)
        for role, url in (role_base_urls or {}).items():
            if url is not None:
                roles.setdefault(role, {})["base_url"] = url
        try:
            return cls(**values, prices=prices, models=models, roles=roles)
        except ValidationError as exc:
            raise ConfigError(f"LLM settings: {_first_error(exc)}") from None


_LIMITS = ("timeout_s", "max_retries", "retry_backoff_s", "max_concurrency", "requests_per_minute")


class _EndpointFile(BaseModel):
    """What a config file may set for an endpoint, at its top or in a role's section."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    retry_backoff_s: float | None = Field(None, ge=0)
    max_concurrency: int | None = Field(None, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    prices: dict[str, Price] | None = None


class _SectionFile(_EndpointFile):
    """What a role's section of a config file may set."""

    model: str | None = None


class _ConfigFile(_EndpointFile):
    """The fields a config file may set."""

    models: dict[LLMRole, str] | None = None
    user: _SectionFile | None = None
    agent: _SectionFile | None = None
    judge: _SectionFile | None = None
    generator: _SectionFile | None = None


def _read_config(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """A config file's settings as `LLMSettings` values, the keys read from `api_key_env`."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config file as UTF-8") from None
    data = read_yaml(text, str(path))  # the one safe reader: aliases bounded, lines named
    lines = _key_lines(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of settings, not a list or text")
    _check_names(path, lines, data, _ConfigFile, "")
    for role in ENDPOINT_ROLES:
        if isinstance(data.get(role), dict):
            _check_names(path, lines, data[role], _SectionFile, f"{role}.")
    try:
        file = _ConfigFile.model_validate(data)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        field = ".".join(str(p) for p in loc[:2]) if loc[0] in ENDPOINT_ROLES else str(loc[0])
        line = lines.get(field, lines.get(str(loc[0]), 1))
        raise ConfigError(f"{path}:{line}: {_first_error(exc)}") from None
    values: dict[str, Any] = {name: getattr(file, name) for name in ("base_url", *_LIMITS)}
    values = {k: v for k, v in values.items() if v is not None}
    if file.prices is not None:
        values["prices"] = file.prices
    models: dict[str, str] = dict(file.models or {})
    if file.api_key_env is not None:
        values["api_key"] = _key(path, lines, "api_key_env", file.api_key_env, env)
    roles: dict[str, dict[str, Any]] = {}
    for role in ENDPOINT_ROLES:
        section: _SectionFile | None = getattr(file, role)
        if section is None:
            continue
        settings = {name: getattr(section, name) for name in ("base_url", *_LIMITS)}
        roles[role] = {k: v for k, v in settings.items() if v is not None}
        if section.prices is not None:
            roles[role]["prices"] = section.prices
        if section.api_key_env is not None:
            where = f"{role}.api_key_env"
            roles[role]["api_key"] = _key(path, lines, where, section.api_key_env, env)
        if section.model is not None:
            models[role] = section.model
            if role == "agent":  # the model a Simulate-played agent defaults to, too
                models.setdefault("target", section.model)
    values["models"] = models
    values["roles"] = roles
    return values


def _check_names(
    path: Path, lines: Mapping[str, int], data: Mapping[Any, Any], schema: type[BaseModel], at: str
) -> None:
    """Refuse a literal key, and unknown settings with the closest known one."""
    if "api_key" in data:
        raise ConfigError(
            f"{path}:{lines.get(at + 'api_key', 1)}: `{at}api_key` is not allowed in a config"
            " file, since config files get committed and shared; put the key in an environment"
            " variable and name it with `api_key_env: OPENAI_API_KEY`"
        )
    for name in data:
        if name not in schema.model_fields:
            raise ConfigError(
                f"{path}:{lines.get(f'{at}{name}', 1)}: unknown setting {at + str(name)!r}"
                f"{did_you_mean(str(name), schema.model_fields)};"
                f" choose from: {', '.join(schema.model_fields)}"
            )


def _key(path: Path, lines: Mapping[str, int], where: str, var: str, env: Mapping[str, str]) -> str:
    """The key in the environment variable ``var`` that `api_key_env` names."""
    key = env.get(var)
    if not key:
        raise ConfigError(
            f"{path}:{lines.get(where, 1)}: {where} names {var!r}, but that environment"
            " variable is not set"
        )
    return key


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers of a YAML mapping's top-level keys, and of its sections' (`judge.model`)."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines: dict[str, int] = {}
    for key, value in node.value:
        lines[str(key.value)] = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode) and key.value in ENDPOINT_ROLES:
            for sub, _ in value.value:
                lines[f"{key.value}.{sub.value}"] = sub.start_mark.line + 1
    return lines


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"] if p != "[key]")
    return f"{where}: {error['msg']}" if where else error["msg"]
