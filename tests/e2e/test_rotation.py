"""Rotate the issuer's key; the running API accepts tokens signed with the new key."""

import time

import httpx
from joserfc import jws

from cats_dogs_other.testing.images import png
from tests.e2e.support import StackProcess
from tests.e2e.test_upload import upload


def kid_of(token: str) -> str:
    kid: str = jws.extract_compact(token.encode()).headers()["kid"]
    return kid


def test_rotation_end_to_end(stack: StackProcess) -> None:
    old_token = stack.token()
    assert upload(stack, png((230, 20, 20)), old_token).status_code == 200  # keys cached

    rotation = httpx.post(stack.issuer_url + "admin/rotate-keys")
    assert rotation.status_code == 200, rotation.text
    new_kid = rotation.json()["kid"]
    assert new_kid != kid_of(old_token)
    time.sleep(1.1)  # the stack runs the API with JWKS_REFRESH_COOLDOWN_S=1

    new_token = stack.token()
    assert kid_of(new_token) == new_kid
    accepted = upload(stack, png((230, 20, 20)), new_token)
    assert accepted.status_code == 200, accepted.text  # unknown kid -> one refetch -> accepted
    assert upload(stack, png((230, 20, 20)), old_token).status_code == 200  # old key published
