"""What the API, the development issuer and the training pipeline share.

The loopback rule, JOSE parsing that refuses hostile input, DPoP proof checks, the replay cache,
the ``--help`` layout, the repository's root and the development defaults live here, below all
three, so none reaches into another. This package imports nothing from ``api``, ``dev_issuer``
or ``train``.
"""
