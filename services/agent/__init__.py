"""Agent runtimes: the interface (`base.AgentRuntime`), the built-in offline one and an
OpenAI-compatible HTTP backend, chosen by TICKETWIRE_AGENT_BASE_URL (unset = offline)."""

from __future__ import annotations

import threading

from services.agent.base import AgentRuntime
from services.agent.offline import OfflineRuntime
from services.agent.openai_compat import OpenAICompatRuntime, OpenAIConfig

_lock = threading.Lock()
_runtimes: dict[OpenAIConfig | None, AgentRuntime] = {}
_override: AgentRuntime | None = None


def get_runtime() -> AgentRuntime:
    """The configured runtime (one per configuration per process, so HTTP connections are reused)."""
    if _override is not None:
        return _override
    config = OpenAIConfig.from_env()
    with _lock:
        runtime = _runtimes.get(config)
        if runtime is None:
            runtime = OfflineRuntime() if config is None else OpenAICompatRuntime(config)
            _runtimes[config] = runtime
        return runtime


def use_runtime(runtime: AgentRuntime | None) -> AgentRuntime | None:
    """Install a runtime process-wide (tests, benchmarks); None goes back to the configured one."""
    global _override
    previous, _override = _override, runtime
    return previous


__all__ = ["AgentRuntime", "OfflineRuntime", "OpenAICompatRuntime", "OpenAIConfig", "get_runtime", "use_runtime"]
