"""A deterministic synthetic Contoso tenant (the demo story of COMMON.md).

Same (users, seed) -> byte-identical state: every random choice comes from one
`random.Random(seed)`, GUIDs included, and dates count from a fixed epoch.

The story:
* policies "Block Basic Auth" (the org default; an admin-center edit turned on Imap and Smtp in
  it = drift), "SMTP relay devices" (Smtp only, held by scanner-NN@contoso.com device accounts),
  "Legacy 2018 Policy" (several protocols, held by nobody);
* most users hold "Block Basic Auth" directly; the newest ~5% have no direct policy; the
  break-glass account breakglass@contoso.com holds "Block Basic Auth" directly (drift: the file
  wants it on the default only); two scanners hold "Block Basic Auth" (drift) and a few ordinary
  users hold "SMTP relay devices" (drift);
* groups: "SMTP Exceptions" with the nested group "Line-of-business apps", department lists,
  two Microsoft 365 groups, and a membership cycle ("Finance Team" <-> "Finance Approvers");
* transport config SmtpClientAuthenticationDisabled never set by the admin (None): Microsoft's
  end-of-2026 default-off applies, shown as the `smtp_default_off` setting says; scanners
  re-enable it per mailbox (CASMailbox False), and so do the few ordinary users on the relay
  policy (drift); a few mailboxes disable it explicitly (True); everybody else follows the org.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from reconciler.emulator.state import (
    RECIPIENT_TYPE,
    STATE_FORMAT,
    new_policy_record,
    user_dn,
)

TENANT_EPOCH = dt.datetime(2019, 3, 4, 8, 30, tzinfo=dt.UTC)

FIRST_NAMES = [
    "Ann",
    "Ben",
    "Carla",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kara",
    "Liam",
    "Mona",
    "Nils",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavi",
    "Yara",
    "Zoe",
    "Adele",
    "Bruno",
    "Chloe",
    "Diego",
    "Emil",
    "Fatima",
    "Gita",
    "Hugo",
    "Ivy",
    "Jamal",
    "Kim",
    "Lena",
    "Marco",
    "Nadia",
    "Oscar",
    "Paula",
    "Raj",
    "Sara",
    "Tom",
    "Uma",
    "Victor",
    "Wanda",
    "Yusuf",
    "Zara",
]
LAST_NAMES = [
    "Lee",
    "Novak",
    "Silva",
    "Patel",
    "Berg",
    "Okafor",
    "Tanaka",
    "Rossi",
    "Meyer",
    "Kowalski",
    "Haddad",
    "Larsen",
    "Costa",
    "Dubois",
    "Nguyen",
    "Schmidt",
    "Fischer",
    "Moreau",
    "Ivanova",
    "Andersen",
    "Khan",
    "Garcia",
    "Murphy",
    "Jensen",
    "Wright",
    "Kim",
    "Hall",
    "Young",
    "Lopez",
    "Adams",
    "Baker",
    "Clark",
    "Evans",
    "Green",
    "Hughes",
    "King",
    "Lewis",
    "Mills",
    "Price",
    "Reed",
    "Shaw",
    "Ward",
]
DEPARTMENTS = (
    "Sales",
    "Marketing",
    "Finance",
    "Engineering",
    "Operations",
    "Human Resources",
    "Legal",
    "Support",
    "Research",
    "Facilities",
)
TITLES = {
    "Sales": ("Account Executive", "Sales Manager", "Sales Associate"),
    "Marketing": ("Marketing Specialist", "Brand Manager", "Content Writer"),
    "Finance": ("Accountant", "Financial Analyst", "Controller"),
    "Engineering": ("Software Engineer", "Senior Engineer", "Engineering Manager"),
    "Operations": ("Operations Analyst", "Logistics Coordinator", "Operations Manager"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Manager"),
    "Legal": ("Counsel", "Paralegal", "Compliance Officer"),
    "Support": ("Support Engineer", "Support Lead", "Service Desk Analyst"),
    "Research": ("Scientist", "Research Associate", "Lab Manager"),
    "Facilities": ("Facilities Coordinator", "Office Manager", "Technician"),
}
COMPANIES = (("Contoso Ltd", 70), ("Contoso Pharmaceuticals", 20), ("Fabrikam Inc", 10))
OFFICES = (  # office, city, country
    ("Seattle HQ", "Seattle", "United States"),
    ("New York", "New York", "United States"),
    ("London", "London", "United Kingdom"),
    ("Berlin", "Berlin", "Germany"),
    ("Paris", "Paris", "France"),
    ("Tokyo", "Tokyo", "Japan"),
    ("Sydney", "Sydney", "Australia"),
    ("Toronto", "Toronto", "Canada"),
)
TYPE_WEIGHTS = (
    ("UserMailbox", 75),
    ("SharedMailbox", 7),
    ("RoomMailbox", 3),
    ("EquipmentMailbox", 1),
    ("MailUser", 5),
    ("User", 7),
    ("GuestMailUser", 2),
)
GUEST_DOMAINS = ("fabrikam.com", "northwindtraders.com", "adatum.com", "tailspintoys.com")

POLICY_BLOCK = "Block Basic Auth"
POLICY_DEVICES = "SMTP relay devices"
POLICY_LEGACY = "Legacy 2018 Policy"


def _guid(rng: random.Random) -> str:
    # A version-4 layout from the seeded generator (uuid.UUID() is slow for 300k ids).
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_CUMULATIVE: dict[int, tuple[list[str], list[int]]] = {}


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    names_weights = _CUMULATIVE.get(id(table))
    if names_weights is None:
        total, cumulative = 0, []
        for _, weight in table:
            total += weight
            cumulative.append(total)
        names_weights = ([name for name, _ in table], cumulative)
        _CUMULATIVE[id(table)] = names_weights
    names, cumulative = names_weights
    return rng.choices(names, cum_weights=cumulative)[0]


_DAY_TEXT: dict[int, str] = {}
_EPOCH_SECONDS = TENANT_EPOCH.hour * 3600 + TENANT_EPOCH.minute * 60 + TENANT_EPOCH.second


def _date(minutes: float) -> str:
    """format_date(TENANT_EPOCH + minutes), without building a datetime per call (100k users)."""
    delta = dt.timedelta(minutes=minutes)  # same microsecond rounding as datetime arithmetic
    days, seconds = divmod(delta.days * 86400 + delta.seconds + _EPOCH_SECONDS, 86400)
    day = _DAY_TEXT.get(days)
    if day is None:
        day = (TENANT_EPOCH.date() + dt.timedelta(days=days)).isoformat()
        _DAY_TEXT[days] = day
    hours, rest = divmod(seconds, 3600)
    return f"{day}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{delta.microseconds:06d}0+00:00"


def generate_tenant(
    users: int,
    seed: int,
    *,
    tenant_domain: str = "contoso.onmicrosoft.com",
    user_domain: str = "contoso.com",
) -> dict[str, Any]:
    """Build the state dict of a synthetic tenant with `users` user objects."""
    rng = random.Random(seed)
    tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{tenant_domain}/{seed}"))
    policies = _policies(rng)
    by_name = {p["Name"]: p["Guid"] for p in policies}
    user_records = _users(rng, users, tenant_domain, user_domain, by_name)
    groups = _groups(rng, user_records, tenant_domain, user_domain)
    organization = {
        "Guid": _guid(rng),
        "DefaultAuthenticationPolicy": by_name[POLICY_BLOCK],
        "WhenCreated": _date(0),
        "WhenChanged": _date(60 * 24 * 500),
    }
    # Never set by the admin: Microsoft's default applies (smtp_default_off says how it shows).
    transport = {"SmtpClientAuthenticationDisabled": None, "Guid": _guid(rng)}
    return {
        "format": STATE_FORMAT,
        "tenant": {"id": tenant_id, "domain": tenant_domain, "display_name": "Contoso"},
        "organization": organization,
        "transport": transport,
        "policies": policies,
        "users": user_records,
        "groups": groups,
    }


def _policies(rng: random.Random) -> list[dict[str, Any]]:
    legacy = new_policy_record(
        POLICY_LEGACY,
        {
            s: True
            for s in (
                "AllowBasicAuthActiveSync",
                "AllowBasicAuthAutodiscover",
                "AllowBasicAuthImap",
                "AllowBasicAuthPop",
                "AllowBasicAuthSmtp",
                "AllowBasicAuthWebServices",
            )
        },
        guid=_guid(rng),
        when=_date(-60 * 24 * 150),
    )
    # Created by the admin center's Modern authentication page (all boxes unticked, which leaves
    # ReportingWebServices and OutlookService alone, i.e. False on a new policy) and later
    # edited there: Imap and Smtp ticked again = drift.
    block = new_policy_record(
        POLICY_BLOCK,
        {"AllowBasicAuthImap": True, "AllowBasicAuthSmtp": True},
        guid=_guid(rng),
        when=_date(60 * 24 * 10),
    )
    block["WhenChanged"] = _date(60 * 24 * 700)
    devices = new_policy_record(
        POLICY_DEVICES,
        {"AllowBasicAuthSmtp": True},
        guid=_guid(rng),
        when=_date(60 * 24 * 40),
    )
    return [block, devices, legacy]


def _new_user(
    rng: random.Random,
    *,
    alias: str,
    upn: str,
    display: str,
    first: str,
    last: str,
    rtd: str,
    department: str,
    title: str,
    company: str,
    office: tuple[str, str, str],
    created_minutes: float,
    tenant_domain: str,
    mail: str,
) -> dict[str, Any]:
    created = _date(created_minutes)
    return {
        "Name": alias,
        "DistinguishedName": user_dn(alias, tenant_domain),
        "Guid": _guid(rng),
        "ExchangeObjectId": _guid(rng),
        "ExternalDirectoryObjectId": _guid(rng),
        "UserPrincipalName": upn,
        "DisplayName": display,
        "FirstName": first,
        "LastName": last,
        "RecipientType": RECIPIENT_TYPE[rtd],
        "RecipientTypeDetails": rtd,
        "WindowsEmailAddress": mail,
        "Department": department,
        "Company": company,
        "Office": office[0],
        "Title": title,
        "City": office[1],
        "CountryOrRegion": office[2],
        "IsDirSynced": rng.random() < 0.6,
        "AccountDisabled": rtd in ("SharedMailbox", "RoomMailbox", "EquipmentMailbox"),
        "WhenCreated": created,
        "WhenChanged": created,
        "StsRefreshTokensValidFrom": None,
        "_policy": None,
        "_smtp_disabled": None,
    }


def _users(
    rng: random.Random,
    count: int,
    tenant_domain: str,
    user_domain: str,
    policies: dict[str, str],
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    used: set[str] = set()
    block, devices = policies[POLICY_BLOCK], policies[POLICY_DEVICES]
    if count == 0:
        return records
    scanners = min(max(3, count // 250), max(0, count - 1))
    span = 60 * 24 * 365 * 7  # seven years of hiring, in minutes

    next_suffix: dict[str, int] = {}

    def unique(alias: str) -> str:
        # O(1) per name: remember the next free numeric suffix of each base name.
        base = alias.lower()
        n = next_suffix.get(base, 1)
        candidate = alias if n == 1 else f"{alias}{n}"
        while candidate.lower() in used:
            n += 1
            candidate = f"{alias}{n}"
        next_suffix[base] = n + 1
        used.add(candidate.lower())
        return candidate

    # The break-glass account comes first (oldest); scanners are spread over the middle.
    breakglass = _new_user(
        rng,
        alias=unique("breakglass"),
        upn=f"breakglass@{user_domain}",
        display="Break Glass (emergency access)",
        first="Break",
        last="Glass",
        rtd="UserMailbox",
        department="IT",
        title="Emergency access account",
        company="Contoso Ltd",
        office=OFFICES[0],
        created_minutes=30,
        tenant_domain=tenant_domain,
        mail=f"breakglass@{user_domain}",
    )
    breakglass["_policy"] = block  # drift: the file wants it on the default only
    records.append(breakglass)
    scanner_slots = set(rng.sample(range(1, count), scanners)) if scanners else set()
    scanner_no = 0
    ordinary = [i for i in range(1, count) if i not in scanner_slots]
    newest_cutoff = int(len(ordinary) * 0.95)
    for i in range(1, count):
        created = 60 + span * i / max(count, 1)
        office = rng.choice(OFFICES)
        company = _weighted(rng, COMPANIES)
        if i in scanner_slots:
            scanner_no += 1
            alias = unique(f"scanner-{scanner_no:02d}")
            user = _new_user(
                rng,
                alias=alias,
                upn=f"{alias}@{user_domain}",
                display=f"Scanner {scanner_no:02d} ({office[0]})",
                first="Scanner",
                last=f"{scanner_no:02d}",
                rtd="UserMailbox",
                department="Facilities",
                title="Multifunction printer",
                company=company,
                office=office,
                created_minutes=created,
                tenant_domain=tenant_domain,
                mail=f"{alias}@{user_domain}",
            )
            # Two scanners drifted onto the block policy; the rest hold the relay policy.
            user["_policy"] = block if scanner_no in (2, 5) else devices
            user["_smtp_disabled"] = False
            records.append(user)
            continue
        rtd = _weighted(rng, TYPE_WEIGHTS)
        department = rng.choice(DEPARTMENTS)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if rtd in ("SharedMailbox", "RoomMailbox", "EquipmentMailbox"):
            label = {
                "SharedMailbox": f"{department} Shared",
                "RoomMailbox": f"{office[1]} Room",
                "EquipmentMailbox": f"{office[1]} Projector",
            }[rtd]
            alias = unique(label.lower().replace(" ", "-"))
            display, first, last = label, "", ""
            upn = f"{alias}@{user_domain}"
            mail = upn
        elif rtd == "GuestMailUser":
            guest_domain = rng.choice(GUEST_DOMAINS)
            local = f"{first}.{last}".lower()
            alias = unique(f"{local}_{guest_domain}#EXT#")
            upn = f"{alias.replace('#EXT#', '')}#EXT#@{tenant_domain}"
            display = f"{first} {last} (Guest)"
            mail = f"{local}@{guest_domain}"
            department, company = "", guest_domain.split(".")[0].capitalize()
        else:
            alias = unique(f"{first}.{last}".lower())
            upn = f"{alias}@{user_domain}"
            display = f"{first} {last}"
            mail = upn if rtd != "User" else ""
        title = rng.choice(TITLES[department]) if department in TITLES else ""
        user = _new_user(
            rng,
            alias=alias,
            upn=upn,
            display=display,
            first=first,
            last=last,
            rtd=rtd,
            department=department,
            title=title,
            company=company,
            office=office,
            created_minutes=created,
            tenant_domain=tenant_domain,
            mail=mail,
        )
        position = len(records) - scanner_no - 1  # index among ordinary users
        # Mail users and guests hold no direct policy: Exchange refuses Set-User
        # -AuthenticationPolicy for them (the set_user_refuses default).
        if position < newest_cutoff and rtd not in ("MailUser", "GuestMailUser"):
            user["_policy"] = block
        if rtd in ("UserMailbox", "SharedMailbox") and rng.random() < 0.02:
            user["_smtp_disabled"] = True
        if rng.random() < 0.1:
            user["StsRefreshTokensValidFrom"] = _date(created + rng.randrange(60, 60 * 24 * 90))
        records.append(user)
    # A few ordinary mailbox users were put on the relay policy by hand (drift).
    candidates = [
        u
        for u in records
        if u["RecipientTypeDetails"] == "UserMailbox"
        and u["_policy"] == block
        and not u["Name"].startswith(("scanner-", "breakglass"))
    ]
    for user in rng.sample(candidates, min(3, len(candidates))):
        user["_policy"] = devices
        user["_smtp_disabled"] = False  # and SMTP AUTH enabled on their mailbox, by hand
    return records


def _group(
    rng: random.Random,
    name: str,
    rtd: str,
    tenant_domain: str,
    user_domain: str,
    members: list[str],
) -> dict[str, Any]:
    alias = name.lower().replace(" ", "-").replace("&", "and")
    created = _date(60 * 24 * rng.randrange(30, 1500))
    return {
        "Name": name,
        "DisplayName": name,
        "Alias": alias,
        "DistinguishedName": user_dn(alias, tenant_domain),
        "Guid": _guid(rng),
        "ExchangeObjectId": _guid(rng),
        "ExternalDirectoryObjectId": _guid(rng),
        "PrimarySmtpAddress": f"{alias}@{user_domain}",
        "RecipientType": "MailUniversalSecurityGroup"
        if rtd == "MailUniversalSecurityGroup"
        else "MailUniversalDistributionGroup",
        "RecipientTypeDetails": rtd,
        "WhenCreated": created,
        "WhenChanged": created,
        "members": members,
        "owners": members[:1],
    }


def _groups(
    rng: random.Random,
    users: list[dict[str, Any]],
    tenant_domain: str,
    user_domain: str,
) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    people = [
        u
        for u in users
        if u["RecipientTypeDetails"] == "UserMailbox"
        and not u["Name"].startswith(("scanner-", "breakglass"))
    ]
    shared = [u for u in users if u["RecipientTypeDetails"] == "SharedMailbox"]

    def pick(pool: list[dict[str, Any]], n: int) -> list[str]:
        return [u["Guid"] for u in rng.sample(pool, min(n, len(pool)))]

    lob = _group(
        rng,
        "Line-of-business apps",
        "MailUniversalDistributionGroup",
        tenant_domain,
        user_domain,
        pick(shared, 3) + pick(people, 2),
    )
    exceptions = _group(
        rng,
        "SMTP Exceptions",
        "MailUniversalSecurityGroup",
        tenant_domain,
        user_domain,
        [*pick(people, 4), lob["Guid"]],
    )
    groups += [lob, exceptions]
    for department in DEPARTMENTS:
        members = [
            u["Guid"]
            for u in users
            if u["Department"] == department
            and u["RecipientTypeDetails"] in ("UserMailbox", "SharedMailbox")
        ]
        groups.append(
            _group(
                rng,
                f"Dept - {department}",
                "MailUniversalDistributionGroup",
                tenant_domain,
                user_domain,
                members,
            )
        )
    team = _group(
        rng,
        "Finance Team",
        "MailUniversalDistributionGroup",
        tenant_domain,
        user_domain,
        pick(people, 5),
    )
    approvers = _group(
        rng,
        "Finance Approvers",
        "MailUniversalDistributionGroup",
        tenant_domain,
        user_domain,
        [*pick(people, 2), team["Guid"]],
    )
    team["members"].append(approvers["Guid"])  # the cycle: Team -> Approvers -> Team
    groups += [team, approvers]
    for name, size in (("Project Phoenix", 12), ("Marketing Hub", 25)):
        groups.append(
            _group(rng, name, "GroupMailbox", tenant_domain, user_domain, pick(people, size))
        )
    return groups


def joiners(
    rng: random.Random,
    count: int,
    taken: set[str],
    *,
    tenant_domain: str,
    user_domain: str,
) -> list[dict[str, Any]]:
    """`count` new user mailboxes as Exchange creates them: no direct policy, no overrides.
    Aliases `joiner-N` skip every name in `taken` (lower case)."""
    out: list[dict[str, Any]] = []
    now = (dt.datetime.now(dt.UTC) - TENANT_EPOCH).total_seconds() / 60
    number = 0
    while len(out) < count:
        number += 1
        alias = f"joiner-{number}"
        if alias in taken:
            continue
        taken.add(alias)
        upn = f"{alias}@{user_domain}"
        out.append(
            _new_user(
                rng,
                alias=alias,
                upn=upn,
                display=f"Joiner {number}",
                first="Joiner",
                last=str(number),
                rtd="UserMailbox",
                department="Sales",
                title="",
                company="Contoso Ltd",
                office=("London", "London", "United Kingdom"),
                created_minutes=now,
                tenant_domain=tenant_domain,
                mail=upn,
            )
        )
    return out
