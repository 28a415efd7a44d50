"""The GO/NO-GO rules moved to `telephony.gonogo` (one module for the badge and the command)."""

from telephony.gonogo import Finding, Thresholds, Verdict, judge, percentile

__all__ = ["Finding", "Thresholds", "Verdict", "judge", "percentile"]
