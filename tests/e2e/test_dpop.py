"""A DPoP-bound token from the development issuer, then /upload with a fresh proof each time."""

import subprocess
import sys

import httpx

from cats_dogs_other.testing.images import png
from tests.dpop_proofs import ProofSigner
from tests.e2e.support import CLASSES, REPO_ROOT, StackProcess


def upload(stack: StackProcess, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        stack.api_url + "/upload",
        files={"file": ("image.png", png((230, 20, 20)), "image/png")},
        headers=headers,
        timeout=30,
    )


def test_dpop_bound_token_then_upload_with_proofs(stack: StackProcess) -> None:
    signer = ProofSigner()
    token = stack.token(dpop=signer)
    url = stack.api_url + "/upload"

    for _ in range(2):
        proof = signer.proof("POST", url, access_token=token)
        response = upload(stack, {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert response.status_code == 200, response.text
        assert response.json()["prediction"] in CLASSES

    replayed = upload(stack, {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert replayed.status_code == 401
    assert 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]


def test_stolen_dpop_token_is_useless_without_the_key(stack: StackProcess) -> None:
    token = stack.token(dpop=ProofSigner())
    thief = ProofSigner()

    as_bearer = upload(stack, {"Authorization": f"Bearer {token}"})
    own_proof = thief.proof("POST", stack.api_url + "/upload", access_token=token)
    with_own_key = upload(stack, {"Authorization": f"DPoP {token}", "DPoP": own_proof})

    assert as_bearer.status_code == 401
    assert with_own_key.status_code == 401
    assert "another key" in with_own_key.json()["detail"]


def test_missing_token_offers_both_schemes(stack: StackProcess) -> None:
    response = upload(stack, {})

    assert response.status_code == 401
    schemes = [value.split(" ", 1)[0] for value in response.headers.get_list("www-authenticate")]
    assert schemes == ["Bearer", "DPoP"]


def test_the_docs_snippet_runs_against_the_stack(stack: StackProcess) -> None:
    """docs/auth.md's Python DPoP client, with the stack's ports, as a user would paste it."""
    page = (REPO_ROOT / "docs" / "auth.md").read_text()
    marker = "<!-- dpop-snippet: run by tests/e2e/test_dpop.py -->\n```python\n"
    code = page.split(marker, 1)[1].split("```", 1)[0]
    code = code.replace("http://127.0.0.1:9000/", stack.issuer_url)
    code = code.replace("http://127.0.0.1:8080", stack.api_url)

    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert "'prediction':" in run.stdout
