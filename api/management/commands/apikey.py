"""`python manage.py apikey`: issue, list and revoke API keys (README: "Access and roles")."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiKey

SCOPES = [choice.value for choice in ApiKey.Scope]


class Command(BaseCommand):
    help = "Issue (create), list or revoke API keys. Keys are stored hashed; a new key is shown once."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Issue a key and print it (once).")
        create.add_argument("--name", required=True, help="Who the key is for, e.g. the clinic's system.")
        create.add_argument(
            "--scope", action="append", choices=SCOPES, required=True, help="outcomes and/or predict; repeatable."
        )
        actions.add_parser("list", help="Keys with their prefix, scopes and state (never the key).")
        revoke = actions.add_parser("revoke", help="Revoke a key by its prefix (the part before the dot).")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            api_key, key = ApiKey.objects.create_key(name=options["name"], scopes=sorted(set(options["scope"])))
            self.stdout.write(f"Key for {api_key.name} (scopes: {', '.join(api_key.scopes)}), shown only now:")
            self.stdout.write(key)
            self.stdout.write(f"Send it as: Authorization: Api-Key {key}")
        elif action == "list":
            for api_key in ApiKey.objects.order_by("created"):
                state = "revoked" if api_key.revoked else ("expired" if api_key.has_expired else "active")
                self.stdout.write(f"{api_key.prefix}  {state:<8} {','.join(api_key.scopes):<18} {api_key.name}")
        else:
            updated = ApiKey.objects.filter(prefix=options["prefix"]).update(revoked=True)
            if not updated:
                raise CommandError(f"No API key with prefix {options['prefix']!r}; see `manage.py apikey list`.")
            self.stdout.write(f"Revoked the key {options['prefix']}.")
