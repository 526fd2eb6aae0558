"""Token from the development issuer, then /upload on the API: the production client flow."""

import httpx

from tests.e2e.support import CLASSES, E2EModel, StackProcess, png


def upload(stack: StackProcess, image: bytes, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        stack.api_url + "/upload",
        files={"file": ("image.png", image, "image/png")},
        headers=headers,
        timeout=30,
    )


def test_token_then_upload_gives_a_prediction(stack: StackProcess, e2e_model: E2EModel) -> None:
    response = upload(stack, png((230, 20, 20)), stack.token())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] in CLASSES
    assert len(body["values"]) == len(CLASSES)
    assert abs(sum(body["values"]) - 1.0) < 1e-3
    if e2e_model.red is not None:
        assert body["prediction"] == e2e_model.red


def test_upload_without_token_is_401_with_bearer_challenge(stack: StackProcess) -> None:
    response = upload(stack, png((230, 20, 20)), token=None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_without_the_scope_is_403_insufficient_scope(stack: StackProcess) -> None:
    token = stack.token("no-scope-client", "no-scope-secret")

    response = upload(stack, png((230, 20, 20)), token)

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_token_from_another_issuer_instance_is_refused(stack: StackProcess) -> None:
    """A token signed by a key the issuer does not publish (here: edited signature) is 401."""
    header, payload, signature = stack.token().split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"

    response = upload(stack, png((230, 20, 20)), forged)

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
