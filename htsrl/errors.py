"""Every error htsrl reports to a user, in one place.

Each carries the exit code the CLI returns for it and whether restarting the rollout from the last
barrier can help (``retryable``), so the CLI catches :class:`HtsrlError` once and the runner decides
about a restart from the error, not from its type's name.

| error | exit | retryable | when |
|---|---|---|---|
| ConfigError | 2 | no | bad input, found before any process starts |
| CheckpointError | 2 | no | a checkpoint that is missing, corrupt, tampered with or from another run |
| CheckpointWriteError | 1 | no | a checkpoint could not be written (the previous one is kept) |
| RoleFailed | 1 | yes | a role process raised or died (an env that raised, a killed process) |
| ReplayMismatch | 1 | no | an env did not retrace its recorded history: it is not deterministic |
| RolloutHang | 1 | no | no progress within the watchdog timeout |
| PeerFailed | 1 | no | another rank of a distributed job died or hung |
| NonFiniteError | 1 | no | NaN/inf in a reward, loss or gradient (stopped before the weights) |
| Interrupted | 130 | no | Ctrl-C or SIGTERM; a checkpoint was saved |
"""

from __future__ import annotations

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


class HtsrlError(Exception):
    exit_code = EXIT_FAILED
    retryable = False


class ConfigError(HtsrlError, ValueError):
    """Bad user input: reported as one line, exit code 2, before any process starts."""

    exit_code = EXIT_BAD_INPUT


class CheckpointError(HtsrlError):
    """A checkpoint that cannot be trusted or used; it is refused whole, never half-loaded."""

    exit_code = EXIT_BAD_INPUT


class CheckpointWriteError(HtsrlError):
    """A checkpoint could not be written; the previous one is intact."""


class RolloutError(HtsrlError):
    """The rollout stopped; the message names the role and what happened."""


class RoleFailed(RolloutError):
    """A role process raised or died. ``retryable`` is False when the child's own error says a restart
    cannot help (a replay mismatch, say)."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class ReplayMismatch(RolloutError):
    """An env did not retrace its recorded history: it is not deterministic given its seed, so
    replaying it again cannot succeed."""


class RolloutHang(RolloutError):
    """No progress within the watchdog timeout."""


class PeerFailed(RolloutError):
    """A collective with the other ranks failed: another rank died or hung."""


class NonFiniteError(HtsrlError, FloatingPointError):
    """A NaN/inf reached a reward, loss or gradient; the update stopped before the optimizer step."""


class Interrupted(HtsrlError):
    """Ctrl-C or SIGTERM: the run stopped at a barrier and saved a checkpoint."""

    exit_code = EXIT_INTERRUPTED
