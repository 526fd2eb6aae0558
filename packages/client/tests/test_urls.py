"""No secret in clear text: the secret and the token go over https, or plain http to loopback
only, unless ``--allow-insecure-http`` says otherwise; URLs in messages hide userinfo and query.
"""

from __future__ import annotations

import httpx
import pytest
from kto.client import Classifier, ClientCredentials
from kto.client.auth import BearerAuth
from kto.client.cli import EXIT_AUTH, EXIT_OK, EXIT_USAGE, discover_token_url
from kto.client.errors import ConfigurationError
from kto.client.urls import is_loopback, redact, redact_text, require_secure

TOKEN_PATH = "/oauth/token"


@pytest.mark.parametrize(
    ("flag", "url"),
    [
        ("--token-url", "http://203.0.113.7/oauth/token"),
        ("--api-url", "http://api.test"),
        ("--issuer", "http://tenant.test/"),
        ("--token-url", "http://127.0.0.1.example.com/oauth/token"),
    ],
)
def test_plain_http_off_loopback_is_refused_before_any_request(run, servers, images, flag, url):
    code, out, err, _ = run(flag, url, *map(str, images("a.png")), token_url=flag != "--issuer")

    assert code == EXIT_USAGE and out == ""
    assert len(err.strip().splitlines()) == 1
    assert flag in err and url in err and "--allow-insecure-http" in err
    assert servers.requests == [], "nothing was sent, least of all the secret"


def test_a_discovered_plain_http_token_endpoint_is_refused(run, servers, images) -> None:
    servers.token_endpoint = "http://tenant.test/oauth/token"
    code, _, err, _ = run(
        "--issuer", "https://tenant.test/", *map(str, images("a.png")), token_url=False
    )

    assert code == EXIT_USAGE
    assert (
        "token_endpoint" in err and servers.token_endpoint in err and "--allow-insecure-http" in err
    )
    assert [r.url.path for r in servers.requests] == ["/.well-known/openid-configuration"]


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_the_opt_out_allows_plain_http(run, servers, images, monkeypatch, how) -> None:
    servers.token_url, servers.api_url = "http://tenant.test/oauth/token", "http://api.test"
    if how == "variable":
        monkeypatch.setenv("CDO_ALLOW_INSECURE_HTTP", "1")
    args = ["--allow-insecure-http"] if how == "flag" else []
    code, _, err, _ = run(*args, *map(str, images("a.png")))

    assert code == EXIT_OK, err
    assert [str(r.url) for r in servers.requests] == [servers.token_url, "http://api.test/upload"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LocalHost"])
def test_plain_http_to_loopback_needs_no_opt_out(run, servers, images, host) -> None:
    servers.api_url = f"http://{host}:8080"
    code, _, err, _ = run(*map(str, images("a.png")))
    assert code == EXIT_OK, err


def test_the_command_over_real_loopback_http(run, loopback, images) -> None:
    loopback.answers[TOKEN_PATH] = (200, {"access_token": "t", "token_type": "Bearer"})
    loopback.answers["/upload"] = (200, {"prediction": "Dog", "values": [0.1, 0.8, 0.1]})
    code, out, err, _ = run(
        "--token-url", loopback.url + TOKEN_PATH, "--api-url", loopback.url,
        *map(str, images("a.png")), network=True,
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert out.splitlines()[1].split()[1] == "Dog"
    assert loopback.paths == [TOKEN_PATH, "/upload"]


def test_the_python_api_refuses_plain_http_too(servers) -> None:
    http = httpx.Client(transport=servers.transport)
    with pytest.raises(ConfigurationError, match=r"The token URL .* --allow-insecure-http"):
        servers.credentials(http, token_url="http://203.0.113.7/oauth/token")
    tokens = servers.credentials(http)
    with pytest.raises(ConfigurationError, match=r"The API URL http://api\.test is plain http"):
        Classifier(http, "http://api.test", BearerAuth(tokens))
    with pytest.raises(ConfigurationError, match=r"The issuer http://tenant\.test/ is plain http"):
        discover_token_url(http, "http://tenant.test/")
    assert servers.requests == []
    assert ClientCredentials(
        http, token_url="http://tenant.test/t", client_id="c", client_secret="s", audience="a",
        allow_insecure_http=True,
    ).token_url == "http://tenant.test/t"  # fmt: skip


@pytest.mark.parametrize("url", ["ftp://tenant.test/token", "tenant.test/oauth/token", "https://"])
def test_anything_but_http_or_https_is_refused(url) -> None:
    with pytest.raises(ConfigurationError, match="must be an https URL"):
        require_secure(url, "--token-url", allow_insecure_http=True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("localhost", True),
        ("128.0.0.1", False),
        ("::ffff:127.0.0.1", False),  # not one of the names the decision lists
        ("localhost.example.com", False),
        ("0.0.0.0", False),  # noqa: S104 - a host name here, nothing binds
    ],
)
def test_what_counts_as_loopback(host, loopback) -> None:
    assert is_loopback(host) is loopback


def test_errors_hide_the_userinfo_and_query_of_a_url(run, loopback, images) -> None:
    loopback.answers[TOKEN_PATH] = (401, {"error": "access_denied"})
    secret_url = loopback.url.replace("//", "//ci:pa55word@") + TOKEN_PATH + "?api_key=k3y"
    code, _, err, _ = run("--token-url", secret_url, *map(str, images("a.png")), network=True)

    assert code == EXIT_AUTH and loopback.paths == [TOKEN_PATH + "?api_key=k3y"]
    assert "pa55word" not in err and "k3y" not in err and "ci:" not in err
    assert (
        f"http://***@127.0.0.1:{loopback.url.rsplit(':', 1)[1]}{TOKEN_PATH}?*** answered 401" in err
    )


def test_the_refusal_hides_the_password_too(run, images) -> None:
    code, _, err, _ = run(
        "--token-url", "http://u:pa55word@203.0.113.7/t?k=k3y", *map(str, images("a.png"))
    )
    assert code == EXIT_USAGE
    assert "pa55word" not in err and "k3y" not in err and "http://***@203.0.113.7/t?***" in err


def test_a_failed_discovery_shows_the_issuer_redacted(run, loopback, images) -> None:
    issuer = loopback.url.replace("//", "//me:pa55word@") + "/?tenant=k3y"  # answers 404
    code, _, err, _ = run(
        "--issuer", issuer, *map(str, images("a.png")), token_url=False, network=True
    )
    assert code == EXIT_AUTH
    assert "pa55word" not in err and "k3y" not in err and "***@127.0.0.1" in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@tenant.test:8443/oauth/token?a=b&c=d#frag",
            "https://***@tenant.test:8443/oauth/token?***",
        ),
        ("https://tenant.test/oauth/token", "https://tenant.test/oauth/token"),
        ("https://tok@tenant.test/", "https://***@tenant.test/"),
        ("user:pw@tenant.test/x?k=v", "***@tenant.test/x?***"),
    ],
)
def test_redact(url, shown) -> None:
    assert redact(url) == shown


def test_redact_text_finds_urls_inside_a_message() -> None:
    message = "proxy http://u:pw@proxy.test:3128/?token=abc refused"
    assert redact_text(message) == "proxy http://***@proxy.test:3128/?*** refused"


def test_a_url_that_does_not_parse_is_refused_with_its_secrets_hidden() -> None:
    with pytest.raises(ConfigurationError) as caught:
        require_secure("https://user:pw@[::1/token?key=secret", "--api-url")
    message = str(caught.value)
    assert message.startswith("--api-url is not a valid URL: ")
    assert "pw" not in message and "secret" not in message


def test_redact_falls_back_to_free_text_for_an_unparsable_url() -> None:
    assert redact("https://user:pw@[::1/x?key=v") == "https://***@[::1/x?***"
