"""Who may call: access tokens checked against the issuers' keys, audience, scope and policy.

Tokens and their claims (``tokens``), the key sets (``jwks``), the trusted issuers and their
policies (``issuers``, ``issuer_check``, ``trust_policy``, GitHub Actions' OIDC tokens in
``github_tokens`` and ``github_policy``), the dependency that yields the verified principal
(``security``) and the offline explanation of a refusal (``explain_token``).
"""
