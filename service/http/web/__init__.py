"""The caregiver web page: server-rendered HTML, no front-end build."""
