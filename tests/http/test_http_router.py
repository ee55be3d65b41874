"""Router: templates, static-over-parameter precedence, HEAD for GET, 404 and 405 with Allow."""

from __future__ import annotations

import pytest

from obscura import errors
from obscura.http import Response, Router


async def _h(request):  # noqa: ANN001
    return Response()


def _router() -> Router:
    r = Router()
    r.add("GET", "/v1/devices", _h, name="list")
    r.add("POST", "/v1/devices/keys", _h, name="keys")
    r.add("GET", "/v1/devices/{deviceId}", _h, name="get")
    r.add("PUT", "/v1/devices/{deviceId}", _h, name="put")
    r.add("DELETE", "/v1/devices/{deviceId}", _h, name="delete")
    r.add("GET", "/v1/users/{userId}", _h, name="user", timeout_s=5, meta={"tier": "standard"})
    r.add("POST", "/v1/attachments", _h, name="upload", stream_body=True)
    return r


def test_parameter_is_captured_and_decoded() -> None:
    route, params = _router().match("GET", "/v1/devices/a%20b")
    assert route.name == "get" and route.pattern == "/v1/devices/{deviceId}"
    assert params == {"deviceId": "a b"}


def test_static_segment_beats_parameter() -> None:
    route, params = _router().match("POST", "/v1/devices/keys")
    assert route.name == "keys" and params == {}


def test_static_path_with_other_method_is_405_not_a_parameter() -> None:
    # Spec §2.1: GET /v1/devices/keys hits the static route, which only allows POST.
    with pytest.raises(errors.MethodNotAllowed) as exc:
        _router().match("GET", "/v1/devices/keys")
    assert exc.value.status == 405
    assert exc.value.headers == [("Allow", "POST")]


def test_get_routes_answer_head_and_allow_lists_head() -> None:
    route, _ = _router().match("HEAD", "/v1/devices/x")
    assert route.name == "get"
    with pytest.raises(errors.MethodNotAllowed) as exc:
        _router().match("POST", "/v1/devices/x")
    assert exc.value.headers == [("Allow", "DELETE, GET, HEAD, PUT")]


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/devices/", "/v1/devices/x/y", "/v1/devices//",
                                  "/v2/devices", "", "v1/devices"])
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(errors.NotFound):
        _router().match("GET", path)


def test_route_options_are_kept() -> None:
    r = _router()
    user, _ = r.match("GET", "/v1/users/u")
    upload, _ = r.match("POST", "/v1/attachments")
    assert user.timeout_s == 5 and user.meta == {"tier": "standard"} and not user.stream_body
    assert upload.stream_body and upload.timeout_s is None
    assert len(r.routes) == 7


def test_bad_registrations_are_refused() -> None:
    r = _router()
    with pytest.raises(ValueError):
        r.add("GET", "/v1/devices", _h)  # duplicate
    with pytest.raises(ValueError):
        r.add("GET", "/v1/devices/{other}/x", _h)  # clashing parameter name
    with pytest.raises(ValueError):
        r.add("GET", "no-slash", _h)
