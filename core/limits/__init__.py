"""Per-tenant token and request limits that hold across replicas (docs/limits.md).

Three concepts in three places, as in alisaifee/limits: policy values (``_policy``), the
algorithm (``_window``), the store behind a port (``_port``; ``_memory``, ``_table``), plus the
replica's hot path (``_limiter``) that admits from leased slices of budget.
"""

from ._limiter import Limiter, LimitMetrics, Ticket
from ._memory import MemoryBudgetStore
from ._policy import Limit, LimitPolicy, TenantLimits
from ._port import BudgetStore, Row, StoreUnavailable, Tally
from ._quota import Quota, QuotaKeeper, QuotaMetrics, QuotaTicket
from ._window import Exchange, Grant, SlidingWindow

__all__ = [
    "BudgetStore",
    "Exchange",
    "Grant",
    "Limit",
    "LimitMetrics",
    "LimitPolicy",
    "Limiter",
    "MemoryBudgetStore",
    "Quota",
    "QuotaKeeper",
    "QuotaMetrics",
    "QuotaTicket",
    "Row",
    "SlidingWindow",
    "StoreUnavailable",
    "Tally",
    "TenantLimits",
    "Ticket",
]
