"""Chiefs' contacts as administrators set them: one address per unit and channel, checked
against the channel's address rule, and the language the chief reads on that channel.

The same models check the API's bodies and every row of `tiendo notifier import contacts`,
so a file that passes the CLI's checks fails on the server only for what the server alone
knows (an unknown unit, a channel only this deployment has)."""

from collections.abc import Collection
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.notifier.languages import Language
from services.notifier.repository.reference import Contact, Recipient
from tiendo.addresses import ADDRESS_RULES, address_problem
from tiendo.sheets import normal_text
from tiendo.unit_keys import KEY_PATTERN

# a unit by its version key (the chief of a later version of a reused code has contacts too)
UNIT_PATTERN = KEY_PATTERN
CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # as the contacts table's CHECK


def _normal(value: object) -> object:
    return normal_text(value) if isinstance(value, str) else value


# A name people read and compare: NFC however it was typed or saved (`tiendo.sheets.
# normal_text`, the rule of every reference text, the units import's `chief_name` too),
# before its length is checked: `Nguyễn` typed on a Mac (NFD) is the same chief's name.
Name = Annotated[str, BeforeValidator(_normal)]


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        pattern=CHANNEL_PATTERN,
        description="`email`, `sms`, `webhook`, `chat`, or a channel this deployment adds",
    )
    address: str = Field(min_length=1, max_length=2000, description="in the channel's form")
    language: Language | None = Field(
        None, description="what the chief reads on this channel; null: the campaign policy's"
    )

    @model_validator(mode="after")
    def _address_fits(self) -> "ContactIn":
        if (problem := address_problem(self.channel, self.address)) is not None:
            raise ValueError(f"address: {problem} (channel {self.channel})")
        return self

    def contact(self) -> Contact:
        return Contact(self.channel, self.address, self.language)


class UnitContactsIn(BaseModel):
    """Everything the notifier keeps of a unit's chief; it replaces what was there."""

    model_config = ConfigDict(extra="forbid")

    chief_name: Name | None = Field(None, min_length=1, max_length=200)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _one_address_per_channel(self) -> "UnitContactsIn":
        channels = [c.channel for c in self.contacts]
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        if repeated:
            raise ValueError(f"one address per channel: {', '.join(repeated)} repeated")
        return self


class UnitContactsItem(UnitContactsIn):
    """One unit of a bulk replacement (`PUT /v1/contacts`, the import)."""

    unit: str = Field(pattern=UNIT_PATTERN)


class ContactOut(BaseModel):
    channel: str
    address: str
    language: str | None = Field(description="`vi`, `en`; null: the campaign policy's")


class UnitContactsOut(BaseModel):
    unit: str
    unit_name: str
    chief_name: str | None
    contacts: list[ContactOut]

    @classmethod
    def of(cls, recipient: Recipient) -> "UnitContactsOut":
        return cls(
            unit=recipient.unit,
            unit_name=recipient.name,
            chief_name=recipient.chief_name,
            contacts=[
                ContactOut(channel=c.channel, address=c.address, language=c.language)
                for c in recipient.contacts
            ],
        )


def unknown_channels(body: UnitContactsIn, sent_on: Collection[str]) -> list[tuple[int, str]]:
    """(position, channel) of each contact on a channel the notifier has no rule for and
    does not send on: a typo, or a channel this deployment lacks."""
    return [
        (i, c.channel)
        for i, c in enumerate(body.contacts)
        if c.channel not in ADDRESS_RULES and c.channel not in sent_on
    ]
