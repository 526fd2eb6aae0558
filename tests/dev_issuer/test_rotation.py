"""Key rotation on demand: new kid for new tokens, old key still published, loopback only."""

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from cats_dogs_other.dev_issuer import IssuerSettings, create_app
from tests.dev_issuer.support import token_form


def published_kids(client: TestClient) -> list[str]:
    return [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]


def issue(client: TestClient) -> str:
    token: str = client.post("/oauth/token", data=token_form()).json()["access_token"]
    return token


def test_rotation_signs_new_tokens_with_the_new_key_and_keeps_the_old_one(
    client: TestClient,
) -> None:
    [old_kid] = published_kids(client)
    old_token = issue(client)

    response = client.post("/admin/rotate-keys")

    assert response.status_code == 200
    new_kid = response.json()["kid"]
    assert new_kid != old_kid
    assert response.json()["keys"] == [new_kid, old_kid]
    assert published_kids(client) == [new_kid, old_kid]
    new_token = issue(client)
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    assert jwt.decode(new_token, keys).header["kid"] == new_kid
    assert jwt.decode(old_token, keys).header["kid"] == old_kid  # outstanding token still valid


def test_only_the_configured_number_of_keys_stays_published(client: TestClient) -> None:
    [first] = published_kids(client)
    second = client.post("/admin/rotate-keys").json()["kid"]
    third = client.post("/admin/rotate-keys").json()["kid"]

    assert published_kids(client) == [third, second]
    assert first not in published_kids(client)


@pytest.mark.parametrize("host", ["::1", "127.0.0.2", "::ffff:127.0.0.1"])
def test_every_loopback_address_may_rotate(settings: IssuerSettings, host: str) -> None:
    with TestClient(create_app(settings), client=(host, 1234)) as client:
        assert client.post("/admin/rotate-keys").status_code == 200


@pytest.mark.parametrize("host", ["203.0.113.5", "10.0.0.8", "2001:db8::1", "testclient"])
def test_rotation_is_refused_to_non_loopback_clients(settings: IssuerSettings, host: str) -> None:
    with TestClient(create_app(settings), client=(host, 1234)) as client:
        before = published_kids(client)
        response = client.post("/admin/rotate-keys")

        assert response.status_code == 403
        assert response.json()["error"] == "access_denied"
        assert "loopback" in response.json()["error_description"]
        assert published_kids(client) == before
