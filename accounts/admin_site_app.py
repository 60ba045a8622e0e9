"""unfold's app, installing the two-factor StaffAdminSite as `admin.site`.

unfold's own app config replaces Django's default site with its UnfoldAdminSite in
`ready()`; this one installs the subclass instead, before the admin modules register
their models (so every ModelAdmin and staff page is behind the two-factor login).
"""

from django.contrib import admin
from django.contrib.admin import sites
from unfold.apps import DefaultAppConfig


class StaffUnfoldConfig(DefaultAppConfig):
    name = "unfold"
    default = False

    def ready(self) -> None:
        from .staff_site import StaffAdminSite

        site = StaffAdminSite()
        admin.site = site
        sites.site = site
