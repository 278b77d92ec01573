"""Push providers (APNs, FCM, Web Push) behind one interface: each provider is one module,
registered in ``providers.py``; ``delivery.py`` sends and acts on the answer."""
