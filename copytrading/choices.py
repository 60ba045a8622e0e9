"""Enumerations of spec/client-api.md; integer values are the wire values."""

from django.db import models


class CopyMasterVisibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class CopyMasterAllowedFollowerModes(models.IntegerChoices):
    REAL = 1, "Real only"
    DEMO = 2, "Demo only"
    BOTH = 3, "Real and demo"


class CopySubscriptionStatus(models.IntegerChoices):
    ACTIVE = 0, "Active"
    PAUSED = 1, "Paused"
    STOPPED_BY_RISK = 2, "Stopped by risk rule"


class CopySubscriptionCopyMode(models.IntegerChoices):
    FULL = 0, "Full copy"
    CLOSE_ONLY = 1, "Close only"


class CopySubscriptionVolumeMode(models.IntegerChoices):
    MULTIPLIER = 0, "Multiplier"
    PROPORTIONAL = 1, "Proportional to equity"
    FIXED = 2, "Fixed volume"
    EQUITY_BASED = 3, "Equity-based"


class CopySubscriptionSymbolsMode(models.IntegerChoices):
    ALL = 0, "All symbols"
    ONLY_LISTED = 1, "Only listed symbols"
    ALL_BUT_LISTED = 2, "All but listed symbols"


# The bit of allowed_follower_modes that lets an account of each mode follow.
MODE_BITS = {"REAL": 1, "DEMO": 2}


class MasterEventType(models.TextChoices):
    POSITION_OPENED = "position_opened", "Position opened"
    POSITION_MODIFIED = "position_modified", "Position modified (SL/TP)"
    POSITION_CLOSED = "position_closed", "Position closed"
    ORDER_PLACED = "order_placed", "Pending order placed"
    ORDER_CANCELLED = "order_cancelled", "Pending order cancelled"
    ORDER_FILLED = "order_filled", "Pending order filled"


class MasterEventFanoutState(models.TextChoices):
    PENDING = "pending", "Pending"
    STARTED = "started", "Fan-out started"
    DONE = "done", "Fan-out done"


class CopyInstructionAction(models.TextChoices):
    OPEN = "open", "Open"
    CLOSE = "close", "Close"
    PARTIAL_CLOSE = "partial_close", "Partial close"
    MODIFY_SLTP = "modify_sltp", "Modify SL/TP"
    PLACE_PENDING = "place_pending", "Place pending order"
    CANCEL_PENDING = "cancel_pending", "Cancel pending order"
    SKIP = "skip", "Skip"


class CopyInstructionStatus(models.TextChoices):
    SKIPPED = "skipped", "Skipped"
    WAITING = "waiting", "Waiting for the open it follows"
    MARKET = "market", "Waiting for the market to open"
    READY = "ready", "Ready to send"
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class CopyInstructionOrigin(models.TextChoices):
    EVENT = "event", "Master event"
    REPAIR = "repair", "Reconciliation repair"
    STAFF = "staff", "Staff remedy"


class FollowerOrderStatus(models.TextChoices):
    CREATED = "created", "Created"
    SENT = "sent", "Sent"
    FILLED = "filled", "Filled"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    PLACED = "placed", "Placed (pending)"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class TradeLinkStatus(models.TextChoices):
    OPENING = "opening", "Opening"
    PENDING = "pending", "Pending order resting"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class SubscriptionSyncStatus(models.TextChoices):
    IN_SYNC = "in_sync", "In sync"
    DRIFTING = "drifting", "Drifting"
    OUT_OF_SYNC = "out_of_sync", "Out of sync"
