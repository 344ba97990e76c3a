"""The endpoints' route table (``thunderpush.transports.door.endpoints.Routes``)."""

from thunderpush.transports.door.endpoints import Routes

ROUTES = Routes([(r"/api/(?P<channel>[^/]+)/", "channel")])


def test_a_remembered_path_answers_as_a_new_one_and_its_segments_are_the_callers():
    first = ROUTES.match("/api/caf%C3%A9/")
    assert first == ("channel", {"channel": "café"})
    first[1]["channel"] = "changed"
    assert ROUTES.match("/api/caf%C3%A9/") == ("channel", {"channel": "café"})
    assert ROUTES.match("/nothing") is None and ROUTES.match("/nothing") is None


def test_what_any_client_can_make_it_remember_is_bounded():
    routes = Routes([(r"/api/(?P<channel>[^/]+)/", "channel")])
    for n in range(3000):
        assert routes.match(f"/api/{n}/") == ("channel", {"channel": str(n)})
    assert len(routes._found) <= 1024
    long_path = "/api/" + "x" * 60_000 + "/"
    for _ in range(3):
        assert routes.match(long_path) == ("channel", {"channel": "x" * 60_000})
    assert long_path not in routes._found
