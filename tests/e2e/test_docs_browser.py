"""/docs and /redoc in a real headless browser, under their Content-Security-Policy.

Swagger UI runs from the API's own assets, asks the development issuer for a token (the
audience in the body: the issuer, like Auth0, ignores it in the query string), and uploads
the sample cat photo through "Try it out". The same flow runs against a stack started as in
GitHub Codespaces, where Swagger's token request goes through the API's own origin. Neither
page sends a request off its origin but that token request, and the policy blocks nothing
Swagger needs; ReDoc renders, its CDN logo blocked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Request, chromium, console_log, network_log
from tests.e2e.support import AUDIENCE, CLASSES, REPO_ROOT, StackProcess

CAT = REPO_ROOT / "bruno" / "fixtures" / "cat.png"
TIMEOUT_S = 60

pytestmark = pytest.mark.slow


def authorize(driver: Any, client_id: str, secret: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, TIMEOUT_S)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize"))).click()
    wait.until(ec.visibility_of_element_located((By.ID, "client_id_clientCredentials"))).send_keys(
        client_id
    )
    # The scheme's description is Markdown: <token> must show, not vanish as an HTML tag.
    assert "Authorization: DPoP <token>" in driver.find_element(By.CSS_SELECTOR, ".modal-ux").text
    driver.find_element(By.ID, "client_secret_clientCredentials").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
    # Swagger replaces the button with "Logout" once the token endpoint answered 200.
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".auth-btn-wrapper"), "Logout"))
    errors = driver.find_elements(By.CSS_SELECTOR, ".auth-container .errors")
    assert not [e.text for e in errors if e.text.strip()]
    driver.find_element(By.CSS_SELECTOR, "button.btn-done").click()


UPLOAD_BLOCK = "//div[contains(@class, 'opblock-post') and .//*[@data-path='/upload']]"
LIVE_RESPONSE = UPLOAD_BLOCK + "//table[contains(@class, 'live-responses-table')]"


def try_out_upload(driver: Any, image: Path) -> tuple[str, str]:
    """Expand POST /upload, Try it out, choose the file, Execute: (status, response body)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def clickable(xpath: str) -> Any:
        return WebDriverWait(driver, TIMEOUT_S).until(ec.element_to_be_clickable((By.XPATH, xpath)))

    clickable(UPLOAD_BLOCK + "//*[@data-path='/upload']").click()
    clickable(UPLOAD_BLOCK + "//button[contains(@class, 'try-out__btn')]").click()
    driver.find_element(By.XPATH, UPLOAD_BLOCK + "//input[@type='file']").send_keys(str(image))
    clickable(UPLOAD_BLOCK + "//button[contains(@class, 'execute')]").click()
    status = (By.XPATH, LIVE_RESPONSE + "//tbody//td[contains(@class, 'response-col_status')]")
    WebDriverWait(driver, TIMEOUT_S).until(ec.presence_of_element_located(status))
    code = driver.find_element(*status).text.strip()
    body = driver.find_element(By.XPATH, LIVE_RESPONSE + "//pre[contains(@class, 'microlight')]")
    return code, body.text


def resources_loaded(driver: Any) -> list[str]:
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return urls


def run_docs_flow(stack: StackProcess, profile: Path) -> dict[str, Any]:
    with chromium(profile) as driver:
        driver.get(stack.api_url + "/docs")
        authorize(driver, "dev-client", "dev-secret")
        code, body = try_out_upload(driver, CAT)
        requests, console = network_log(driver), console_log(driver)
    assert code == "200", body
    token_url = stack.issuer_url + "oauth/token"
    off_origin = [r.url for r in requests if r.origin != stack.api_url and r.url != token_url]
    assert not off_origin, requests
    assert not [r for r in requests if r.blocked], requests  # the policy blocks nothing needed
    assert not [line for line in console if "Content Security Policy" in line], console
    result: dict[str, Any] = json.loads(body)
    assert result["prediction"] in CLASSES
    return result


def test_redoc_renders_and_requests_nothing_off_its_origin(
    stack: StackProcess, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    requests: list[Request] = []

    def logo_tried(driver: Any) -> bool:
        """ReDoc tries its sidebar logo (cdn.redoc.ly) once the page has rendered."""
        requests.extend(network_log(driver))
        return any("cdn.redoc.ly" in r.url for r in requests)

    with chromium(tmp_path / "profile") as driver:
        driver.get(stack.api_url + "/redoc")
        wait = WebDriverWait(driver, TIMEOUT_S)
        title = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".api-info h1")))
        assert "cats-dogs-other" in title.text
        assert driver.find_elements(By.XPATH, "//*[contains(text(), '/upload')]")
        wait.until(logo_tried)
        console = console_log(driver)
    sent = [r.url for r in requests if r.origin != stack.api_url and r.blocked is None]
    assert not sent, requests
    blocked = [r.url for r in requests if r.blocked]
    assert blocked == ["https://cdn.redoc.ly/redoc/logo-mini.svg"], requests
    violations = [line for line in console if "Content Security Policy" in line]
    assert all("logo-mini.svg" in line for line in violations), violations


def test_swagger_authorize_and_try_it_out(stack: StackProcess, tmp_path: Path) -> None:
    before = len(stack.lines)
    run_docs_flow(stack, tmp_path / "profile")

    issued = [line for line in stack.lines[before:] if "issued token" in line]
    assert issued and f"audience={AUDIENCE}" in issued[-1]  # read from the body


def test_swagger_in_codespaces_gets_its_token_through_the_api(
    codespaces_stack: StackProcess, tmp_path: Path
) -> None:
    before = len(codespaces_stack.lines)
    run_docs_flow(codespaces_stack, tmp_path / "profile")

    new = codespaces_stack.lines[before:]
    assert any("issued token" in line for line in new)
    assert any('"route": "/dev/oauth/token"' in line and '"status": 200' in line for line in new)
