"""What the probabilistic layer learns from the records' own values, beside m and u.

A ``Lexicon`` is fitted with the model (``IdentityGraph.fit_matcher``) and stored with it, so
that every record's match columns are derived the same way whatever order records arrive in:

- ``first_names`` and ``last_names``: the names the records carry, to read an address's local
  part (``hugosingh``, ``reed.hannah``) beyond the nickname table's names;
- ``mail_providers``: web domains that are mail services, not organisations. Known public
  providers, plus domains whose addresses belong to people of many different organisations
  (declared companies or CRM accounts): at least ``_PROVIDER_ORGANISATIONS`` of them, none
  holding half. An address at any other domain names its organisation;
- ``account_organisations``: a CRM account's organisation, the domain most of its contacts'
  addresses are at (``IdentifierKind.ACCOUNT_ID``), so a contact recorded without an address
  at work still has a company.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from crmfs.definitions import IdentifierKind as K
from crmfs.identity.deterministic import IdentityRecord
from crmfs.identity.normalize import email_organisation

# Labels (``email_organisation``) of public mail services.
PUBLIC_MAIL_PROVIDERS = frozenset(
    {
        "gmail", "googlemail", "yahoo", "ymail", "outlook", "hotmail", "live", "msn", "aol",
        "icloud", "me", "mac", "gmx", "web", "mail", "proton", "protonmail", "pm", "fastmail",
        "zoho", "yandex", "tutanota", "hey", "orange", "free", "laposte", "libero", "qq", "163",
    }
)  # fmt: skip
_PROVIDER_ORGANISATIONS = 3


@dataclass(frozen=True)
class Lexicon:
    first_names: frozenset[str] = frozenset()
    last_names: frozenset[str] = frozenset()
    mail_providers: frozenset[str] = PUBLIC_MAIL_PROVIDERS
    account_organisations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def learn(cls, records: Iterable[IdentityRecord]) -> Lexicon:
        firsts: set[str] = set()
        lasts: set[str] = set()
        organisations_at: dict[str, Counter[str]] = {}  # domain -> organisations seen there
        account_domains: dict[str, Counter[str]] = {}
        for record in records:
            values: dict[K, str] = {}
            for kind, value in sorted(record.keys):
                values.setdefault(kind, value)
            firsts.update(v for k, v in record.keys if k is K.FIRST_NAME and len(v) > 1)
            lasts.update(v.replace(" ", "") for k, v in record.keys if k is K.LAST_NAME)
            domain = email_organisation(values.get(K.EMAIL))
            if domain is None:
                continue
            company, account = values.get(K.COMPANY), values.get(K.ACCOUNT_ID)
            seen = organisations_at.setdefault(domain, Counter())
            if company:
                seen[f"company:{company}"] += 1
            if account:
                seen[f"account:{account}"] += 1
                account_domains.setdefault(account, Counter())[domain] += 1
        providers = PUBLIC_MAIL_PROVIDERS | {
            domain
            for domain, seen in organisations_at.items()
            if len(seen) >= _PROVIDER_ORGANISATIONS and seen.most_common(1)[0][1] * 2 < seen.total()
        }
        accounts = {}
        for account, domains in sorted(account_domains.items()):
            work = Counter({d: n for d, n in domains.items() if d not in providers})
            if work:
                accounts[account] = min(work, key=lambda d: (-work[d], d))
        return cls(frozenset(firsts), frozenset(lasts), frozenset(providers), accounts)

    def organisation(self, domain: str | None, account: str | None) -> str | None:
        """The organisation an address's domain names (none for a mail provider), else the
        one the record's CRM account is at."""
        if domain is not None and domain not in self.mail_providers:
            return domain
        return self.account_organisations.get(account) if account is not None else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "first_names": sorted(self.first_names),
                "last_names": sorted(self.last_names),
                "mail_providers": sorted(self.mail_providers),
                "account_organisations": dict(sorted(self.account_organisations.items())),
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Lexicon:
        """A stored lexicon; None (a graph fitted before lexicons existed): the default."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            frozenset(data["first_names"]),
            frozenset(data["last_names"]),
            frozenset(data["mail_providers"]),
            dict(data["account_organisations"]),
        )
