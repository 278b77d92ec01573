"""The sync feature on the server: validate a push, merge it under the space lock, page
pulls, poke devices in real time, daily maintenance (the pure merge law is in ``sync/``)."""
