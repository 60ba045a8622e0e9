from django.db import models


class BrokerServerPlatform(models.TextChoices):
    MT4 = "MT4", "MetaTrader 4"
    MT5 = "MT5", "MetaTrader 5"
    CTRADER = "cTrader", "cTrader"
    B2TRADER = "B2Trader", "B2Trader"
    PAPER = "Paper", "Paper venue"
    OTHER = "Other", "Other"


class BrokerServerGatewayKind(models.TextChoices):
    # The REST + WebSocket protocol of spec/paper-venue.md (paper venue and brokers of that shape).
    REST_WS = "rest_ws", "REST + WebSocket"
