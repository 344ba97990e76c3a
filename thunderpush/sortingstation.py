"""Finds the messenger of an API key; one process may serve several apps."""

from __future__ import annotations

from thunderpush.messenger import Messenger


class SortingStation:
    """The process-wide registry of messengers, keyed by public API key."""

    _instance: SortingStation | None = None

    def __init__(self) -> None:
        self.messengers_by_apikey: dict[str, Messenger] = {}

    @classmethod
    def instance(cls) -> SortingStation:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def destroy(self) -> None:
        for messenger in list(self.messengers_by_apikey.values()):
            messenger.destroy()
        SortingStation._instance = None

    def create_messenger(self, apikey: str, apisecret: str) -> Messenger:
        messenger = Messenger(apikey, apisecret)
        self.messengers_by_apikey[apikey] = messenger
        return messenger

    def delete_messenger(self, messenger: Messenger) -> None:
        messenger.destroy()
        del self.messengers_by_apikey[messenger.apikey]

    def get_messenger_by_apikey(self, apikey: str) -> Messenger | None:
        return self.messengers_by_apikey.get(apikey)
