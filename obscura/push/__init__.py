"""Push notifications: the provider interface and the FCM, APNs and logging providers (spec §6.3).

``app.py`` builds them with :func:`obscura.push.factory.make_push_provider`.
"""

from obscura.push.base import COLLAPSE_KEY, TOKEN_TYPES, PushProvider, PushResult, PushTarget

__all__ = ["COLLAPSE_KEY", "TOKEN_TYPES", "PushProvider", "PushResult", "PushTarget"]
