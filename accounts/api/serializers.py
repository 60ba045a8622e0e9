"""Bodies of /auth/login."""

from rest_framework import serializers

from copytrading.api.fields import StrictCharField
from copytrading.api.serializers import StrictSerializer


class LoginSerializer(StrictSerializer):
    username = StrictCharField(max_length=150, trim_whitespace=False)
    password = StrictCharField(max_length=4096, trim_whitespace=False)


class LoginAnswerSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    customer_id = serializers.IntegerField()
