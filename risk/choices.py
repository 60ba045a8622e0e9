"""Enumerations of the risk app: policies of the limits and codes of the rules that fire."""

from django.db import models


class MarginPolicy(models.TextChoices):
    """What the pre-trade margin check does with an order the free margin cannot carry."""

    OFF = "off", "No margin check"
    SKIP = "skip", "Skip the order"
    CUT = "cut", "Cut the volume to what fits"


class SlippagePolicy(models.TextChoices):
    """What happens to an open whose follower price moved beyond `max_slippage`."""

    SKIP = "skip", "Skip the order"
    LIMIT = "limit", "Send a limit order at the master's price"


class MarketClosedPolicy(models.TextChoices):
    """What happens to an open while the follower's market is closed."""

    SKIP = "skip", "Skip with MARKET_CLOSED"
    WAIT = "wait", "Wait for the market to open (up to the expiry)"


class BreachPolicy(models.TextChoices):
    """What a post-trade breach does besides stopping the subscription."""

    CLOSE_POSITIONS = "close_positions", "Close the copied positions and stop"
    STOP_OPENINGS = "stop_openings", "Stop new openings only"


class LossUnit(models.TextChoices):
    AMOUNT = "amount", "Amount in the account currency"
    PERCENT = "percent", "Percent of the period's starting value"


class LossBasis(models.TextChoices):
    BALANCE = "balance", "Balance"
    EQUITY = "equity", "Equity"


class RiskRule(models.TextChoices):
    """Stable codes of the post-trade rules; stored on every stop. Never rename or reuse."""

    EQUITY_FLOOR = "EQUITY_FLOOR", "Equity floor"
    MAX_DRAWDOWN = "MAX_DRAWDOWN", "Drawdown from the equity high-water mark"
    DAILY_LOSS = "DAILY_LOSS", "Daily loss limit"
    WEEKLY_LOSS = "WEEKLY_LOSS", "Weekly loss limit"
    MONTHLY_LOSS = "MONTHLY_LOSS", "Monthly loss limit"
    MARGIN_STOP_OUT = "MARGIN_STOP_OUT", "Margin stop-out at the venue"
    MASTER_MAX_LOTS = "MASTER_MAX_LOTS", "Master's declared maximum lots"
    MASTER_MAX_POSITIONS = "MASTER_MAX_POSITIONS", "Master's declared maximum open positions"
    MASTER_MAX_DRAWDOWN = "MASTER_MAX_DRAWDOWN", "Master's declared maximum drawdown"
