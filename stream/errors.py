"""The one exception tree of OpenITDR.

Every error the product raises on purpose derives from :class:`ITDRError`. Each carries a
human-readable message that names *what* is wrong, *where* (a config key, a file and line, a
topic/partition/offset) and *how to fix it*. Light module: no Faust, no numba.
"""

from __future__ import annotations


class ITDRError(Exception):
    """Root of all OpenITDR errors."""

    def __init__(self, message: str, *, location: str | None = None, fix: str | None = None):
        self.message = message
        self.location = location
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:  # "location: message. Fix: ..."
        text = self.message
        if self.location:
            text = f"{self.location}: {text}"
        if self.fix:
            text = f"{text} Fix: {self.fix}"
        return text

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message,
                "location": self.location, "fix": self.fix}


class ConfigError(ITDRError):
    """Invalid configuration: names the key and the fix."""


class WireFormatError(ITDRError):
    """A wire batch could not be decoded (corrupt, truncated, wrong version)."""


class NormalizationError(ITDRError):
    """A raw event could not be turned into an identity event."""


class ParseError(ITDRError):
    """A raw record (XML, JSON, EVTX) could not be parsed."""


class UnknownEventError(NormalizationError):
    """The event id is not one the product consumes (counted and dropped, never fatal)."""


class DetectorError(ITDRError):
    """A detector's metadata or parameters are invalid."""


class DuplicateDetectorError(DetectorError):
    """Two detectors registered the same id."""


class BrokerError(ITDRError):
    """The embedded broker could not be started or reached."""


class SinkError(ITDRError):
    """A sink failed."""


class SinkBackpressureError(SinkError):
    """The destination is throttling: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0, **kw):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class PermanentSinkError(SinkError):
    """The destination rejected a record for good (goes to the dead-letter topic)."""


class StateError(ITDRError):
    """Detector state could not be restored or saved."""
