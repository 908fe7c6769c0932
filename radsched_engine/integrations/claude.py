"""Claude's review of a de-identified booking: one forced tool call, strictly validated, bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .deid import Deidentified, deidentify

if TYPE_CHECKING:
    import anthropic

__all__ = ["AiFinding", "AnalysisFailed", "ClaudeAnalyzer", "ClaudeSettings", "Deidentified",
           "deidentify"]

FailureKind = Literal["timeout", "rate_limited", "server_error", "http_error", "connection",
                      "invalid", "disabled"]
SEVERITIES = ("block", "warn", "info")
MAX_FINDINGS = 20
DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_BASE_URL = "https://api.anthropic.com"

# --- The prompt: the only place where the task is explained to the model. --------------------
TOOL_NAME = "report_findings"
SYSTEM_PROMPT = """\
You review one radiology booking for a hospital scheduling system.

You get a JSON document: "booking" is the appointment under review (ref "A0"); "neighbours" are \
other appointments near it in time, on the same scanners, rooms or staff, or for the same patient \
("same_patient": true); "rule_findings" are what the deterministic rules already reported. Times \
are relative to the start of A0 ("+26h" is 26 hours after it). The patient is described only by \
age band and sex; there are no identifiers, and you must not ask for any.

Look for clinical scheduling conflicts the rules might have missed: preparation or contrast \
sequencing problems (barium, iodinated contrast, gadolinium, radiotracers, fasting, sedation), \
exams that interfere with each other for the same patient, unsafe or impractical timing, \
duplicated exams, and resource clashes. Do not repeat a rule finding unless you disagree with its \
severity. Report nothing when you see no problem: an empty list is a good answer.

Answer only by calling the tool report_findings once. For each finding give: "rule", a short \
upper-case id starting with "AI-" (for example "AI-CONTRAST-SEQUENCE"); "severity": "block" only \
for a clear clinical or safety conflict, "warn" for something a scheduler should check, "info" for \
advice; "message", one or two plain sentences without any patient identifier; "other", the ref of \
the conflicting appointment (e.g. "A2") or null.
"""
TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Report the scheduling conflicts found for booking A0 (an empty list if none).",
    "input_schema": {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "rule": {"type": "string"},
                        "severity": {"type": "string", "enum": list(SEVERITIES)},
                        "message": {"type": "string"},
                        "other": {"type": ["string", "null"]},
                    },
                    "required": ["rule", "severity", "message"],
                },
            },
        },
        "required": ["findings"],
    },
}


@dataclass(frozen=True, slots=True)
class ClaudeSettings:
    """Anthropic access; without an API key the analyzer is disabled (rules only)."""

    api_key: str = field(default="", repr=False, metadata={"doc": "Anthropic API key (secret)."})
    base_url: str = field(default=DEFAULT_BASE_URL, metadata={"doc": "API endpoint, without /v1."})
    model: str = field(default=DEFAULT_MODEL, metadata={"doc": "Model name."})
    timeout: float = field(default=20.0, metadata={"doc": "Seconds allowed for one HTTP attempt."})
    max_retries: int = field(default=2, metadata={"doc": "SDK retries on 408/409/429/5xx/timeouts."})
    max_tokens: int = field(default=1024, metadata={"doc": "Upper bound of the answer's tokens."})
    deadline: float | None = field(
        default=None, metadata={"doc": "Seconds for the whole analysis, retries and waits included "
                                       "(default: timeout x attempts + 10)."})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClaudeSettings:
        """Read ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``; ``overrides`` come from config."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "api_key": env.get("ANTHROPIC_API_KEY", "").strip(),
            "base_url": env.get("ANTHROPIC_BASE_URL", "").strip() or DEFAULT_BASE_URL,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.timeout <= 0 or settings.max_retries < 0 or settings.max_tokens <= 0:
            raise ValueError("claude: timeout and max_tokens must be positive, max_retries >= 0")
        return settings

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    @property
    def total_seconds(self) -> float:
        """The bound on one ``analyze`` call, whatever ``retry-after`` the server sends."""
        if self.deadline is not None:
            return self.deadline
        return self.timeout * (self.max_retries + 1) + 10.0


@dataclass(frozen=True, slots=True)
class AiFinding:
    """A finding from Claude, in the same shape as the rules' findings (``source == "ai"``)."""

    rule: str
    severity: str
    message: str
    other: str | None = None
    source: str = "ai"
    details: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message,
                "other": self.other, "source": self.source, "details": dict(self.details)}


class AnalysisFailed(Exception):
    """Claude gave no usable answer; ``kind`` says why, ``status`` is the HTTP status if any."""

    def __init__(self, kind: FailureKind, detail: str = "", status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(f"{kind}: {detail}" if detail else kind)

    @property
    def metric_label(self) -> str:
        """The ``metrics.AI_ANALYSES`` result label for this failure."""
        return self.kind if self.kind in ("timeout", "invalid", "disabled") else "failed"


class ClaudeAnalyzer:
    """Sends a de-identified context to Claude and returns its findings (``await close()`` after)."""

    def __init__(self, settings: ClaudeSettings) -> None:
        self.settings = settings
        self._client: anthropic.AsyncAnthropic | None = None
        if settings.enabled:
            # Imported only when used: the SDK takes ~1.7 s of CPU to import, paid at every
            # start of the engine and of its outbox worker process otherwise.
            import anthropic

            self._client = anthropic.AsyncAnthropic(
                api_key=settings.api_key, base_url=settings.base_url,
                timeout=settings.timeout, max_retries=settings.max_retries)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def __aenter__(self) -> ClaudeAnalyzer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def analyze(
        self, context: Mapping[str, Any] | Deidentified, *, aliases: Mapping[str, str] | None = None,
    ) -> list[AiFinding]:
        """Claude's findings for ``context`` (from ``deidentify``); raises ``AnalysisFailed``.

        With ``aliases`` (or a ``Deidentified``), each finding's ``other`` is mapped back from
        the alias (``A2``) to the real appointment key; unknown aliases become None.
        """
        if isinstance(context, Deidentified):
            context, aliases = context.context, context.aliases
        if self._client is None:
            raise AnalysisFailed("disabled", "no ANTHROPIC_API_KEY configured")
        import anthropic

        try:
            async with asyncio.timeout(self.settings.total_seconds):
                message = await self._client.messages.create(
                    model=self.settings.model, max_tokens=self.settings.max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=[{"role": "user", "content": json.dumps(context, sort_keys=True)}],
                    tools=[TOOL], tool_choice={"type": "tool", "name": TOOL_NAME})
        except TimeoutError:
            raise AnalysisFailed("timeout", f"no answer within {self.settings.total_seconds:g} s")
        except anthropic.APITimeoutError:
            raise AnalysisFailed("timeout", f"attempts timed out after {self.settings.timeout:g} s")
        except anthropic.APIConnectionError as exc:
            raise AnalysisFailed("connection", type(exc).__name__)
        except anthropic.RateLimitError as exc:
            raise AnalysisFailed("rate_limited", "HTTP 429", exc.status_code)
        except anthropic.APIStatusError as exc:
            kind: FailureKind = "server_error" if exc.status_code >= 500 else "http_error"
            raise AnalysisFailed(kind, f"HTTP {exc.status_code} {exc.type or ''}".strip(),
                                 exc.status_code)
        except (anthropic.AnthropicError, ValueError) as exc:   # ValueError: a body that is not JSON
            raise AnalysisFailed("invalid", type(exc).__name__)
        return parse_findings(message, aliases)


def parse_findings(message: Any, aliases: Mapping[str, str] | None = None) -> list[AiFinding]:
    """The findings in a ``Message``'s tool call, validated strictly (``AnalysisFailed("invalid")``)."""
    if getattr(message, "stop_reason", None) in ("max_tokens", "refusal"):
        raise AnalysisFailed("invalid", f"stop_reason {message.stop_reason}")
    calls = [b for b in getattr(message, "content", None) or ()
             if getattr(b, "type", None) == "tool_use" and getattr(b, "name", None) == TOOL_NAME]
    if len(calls) != 1:
        raise AnalysisFailed("invalid", f"{len(calls)} {TOOL_NAME} calls in the answer")
    payload = calls[0].input
    if not isinstance(payload, Mapping) or not isinstance(payload.get("findings"), list):
        raise AnalysisFailed("invalid", "tool input has no findings list")
    items = payload["findings"]
    if len(items) > MAX_FINDINGS:
        raise AnalysisFailed("invalid", f"more than {MAX_FINDINGS} findings")
    return [_finding(index, item, aliases) for index, item in enumerate(items)]


def _finding(index: int, item: Any, aliases: Mapping[str, str] | None) -> AiFinding:
    if not isinstance(item, Mapping):
        raise AnalysisFailed("invalid", f"finding {index} is not an object")
    rule, severity, message = item.get("rule"), item.get("severity"), item.get("message")
    other = item.get("other")
    if not isinstance(rule, str) or not rule.strip() or len(rule) > 64:
        raise AnalysisFailed("invalid", f"finding {index}: bad rule")
    if severity not in SEVERITIES:
        raise AnalysisFailed("invalid", f"finding {index}: bad severity")
    if not isinstance(message, str) or not message.strip():
        raise AnalysisFailed("invalid", f"finding {index}: bad message")
    if other is not None and not isinstance(other, str):
        raise AnalysisFailed("invalid", f"finding {index}: bad other")
    if other is not None and aliases is not None:
        other = aliases.get(other.strip()) or None
    return AiFinding(rule.strip(), severity, message.strip()[:500], other)
