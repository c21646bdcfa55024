"""`manage.py drf_create_token admin`: the name DRF's command had, kept for scripts that use it.

Unlike DRF's, it cannot print a user's existing token (only its hash is stored): each
run makes a new one, and ``-r`` revokes the others."""

from .create_api_token import Command as CreateApiToken


class Command(CreateApiToken):
    help = "Alias of create_api_token. " + CreateApiToken.help
