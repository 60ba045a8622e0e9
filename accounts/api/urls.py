"""Routes of /auth/ (with or without a trailing slash, like /copytrade/)."""

from django.urls import path, re_path

from copytrading.api.base import NotFoundApi

from .views import LoginApi, LogoutApi

urlpatterns = [
    path("auth/login", LoginApi.as_view(), name="auth-login"),
    path("auth/login/", LoginApi.as_view()),
    path("auth/logout", LogoutApi.as_view(), name="auth-logout"),
    path("auth/logout/", LogoutApi.as_view()),
    re_path(r"^auth(/.*)?$", NotFoundApi.as_view()),
]
