"""Email addresses, internationalised ones included (RFC 6530–6533, IDNA 2008).

An address has two parts that internationalise differently:

- the domain may be an IDN (`exämple.com`, `例子.广告`). Its ASCII form (`xn--exmple-cua.com`,
  IDNA 2008 with the UTS #46 mapping, via the `idna` package) reaches the same mailbox through
  any SMTP server, so outbound mail always carries the ASCII form when the local part allows;
- the local part may be UTF-8 (`josé@…`, `用户@…`). It has no ASCII form: such mail needs a
  server that offers SMTPUTF8 (RFC 6531) and headers written as raw UTF-8 (RFC 6532).

Stored and shown addresses use the Unicode form (`normalize`): the local part NFC-normalised as
written, an IDN domain in Unicode and lower case, so `jose@xn--exmple-cua.com` and
`jose@EXÄMPLE.com` are one customer (a plain ASCII domain is kept as written). Quoted local parts (`"john doe"@…`) and address literals
(`…@[192.0.2.1]`) are valid RFC 5321 but unused by real customers and refused here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import idna

MAX_ADDRESS_LENGTH = 254  # RFC 5321 §4.5.3.1.3: a 256-octet path minus the angle brackets
MAX_LOCAL_OCTETS = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_LENGTH = 253  # RFC 1035 (ASCII form, without the trailing dot)

# RFC 5322 §3.2.3 atext, extended by RFC 6531 §3.3 with UTF8-non-ascii.
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+$")
_ASCII_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Unicode categories that never belong in an address: controls, format characters (zero-width
# joiners and bidi marks hide what an address really is), separators, unassigned, private use.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class InvalidAddressError(ValueError):
    """Not a usable email address; `reason` says why in words a team member can act on."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class Address:
    """A valid address in both of its forms."""

    local: str
    domain: str  # an IDN in Unicode and lower case; a plain ASCII domain as written
    ascii_domain: str  # IDNA A-labels (equal to `domain` for a plain ASCII domain)

    @property
    def unicode(self) -> str:
        """How it is stored and shown: `josé@exämple.com`."""
        return f"{self.local}@{self.domain}"

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part: deliverable only through a server offering SMTPUTF8."""
        return not self.local.isascii()

    @property
    def transport(self) -> str:
        """What goes on the wire: the ASCII domain whenever the local part is ASCII (any server
        takes it); the Unicode form otherwise (SMTPUTF8 only)."""
        if self.needs_smtputf8:
            return self.unicode
        return f"{self.local}@{self.ascii_domain}"


def _domain(raw: str, address: str) -> tuple[str, str]:
    """(Unicode lower-case domain, ASCII domain) or InvalidAddressError."""
    if not raw:
        raise InvalidAddressError(address, "the domain is missing")
    domain = raw.lower()
    if domain.isascii() and "xn--" not in domain:
        # The common case, without the IDNA tables (a 50,000-row campaign validates each row).
        labels = domain.split(".")
        if not all(_ASCII_LABEL.match(label) for label in labels):
            raise InvalidAddressError(address, "the domain is not a valid host name")
        ascii_domain = unicode_domain = raw  # as written: case does not matter, and is kept
    else:
        try:
            # IDNA 2008 with UTS #46 mapping (case folding, full-width dots: 例子。广告).
            ascii_domain = idna.encode(raw, uts46=True, transitional=False).decode("ascii")
            unicode_domain = idna.decode(ascii_domain)
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidAddressError(address, f"the domain is not a valid internationalised domain name ({exc})") \
                from None
    if "." not in ascii_domain:
        raise InvalidAddressError(address, "the domain needs a dot (a top-level domain alone is not a mail domain)")
    if len(ascii_domain) > MAX_DOMAIN_LENGTH:
        raise InvalidAddressError(address, f"the domain is longer than {MAX_DOMAIN_LENGTH} characters")
    if ascii_domain.rsplit(".", 1)[1].isdigit():
        raise InvalidAddressError(address, "the top-level domain cannot be all digits")
    return unicode_domain, ascii_domain


def _local(raw: str, address: str) -> str:
    local = unicodedata.normalize("NFC", raw)
    if not local:
        raise InvalidAddressError(address, "the part before the @ is missing")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidAddressError(address, "the part before the @ cannot start or end with a dot or hold two dots")
    if not all(_ATEXT.match(atom) for atom in local.split(".")):
        raise InvalidAddressError(address, "the part before the @ holds a character addresses cannot contain")
    if not local.isascii() and any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in local):
        raise InvalidAddressError(address, "the part before the @ holds an invisible or control character")
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise InvalidAddressError(address, f"the part before the @ is longer than {MAX_LOCAL_OCTETS} bytes")
    return local


def parse(value: str) -> Address:
    """Validate one bare address (`local@domain`, no display name); InvalidAddressError if not."""
    if not isinstance(value, str):
        raise InvalidAddressError(str(value), "not a string")
    address = value.strip()
    if not address:
        raise InvalidAddressError(address, "the address is empty")
    if "@[" in address:
        raise InvalidAddressError(address, "address literals such as [192.0.2.1] are not accepted")
    if any(ch in address for ch in " \t\r\n<>,;\"\\()[]"):
        raise InvalidAddressError(address, "an address cannot contain spaces, brackets, commas or quotes")
    local, at, domain = address.rpartition("@")
    if not at:
        raise InvalidAddressError(address, "the address has no @")
    if "@" in local:
        raise InvalidAddressError(address, "the address has more than one @")
    parsed = Address(_local(local, address), *_domain(domain, address))
    if len(parsed.transport.encode("utf-8")) > MAX_ADDRESS_LENGTH:
        raise InvalidAddressError(address, f"the address is longer than {MAX_ADDRESS_LENGTH} characters")
    return parsed


def normalize(value: str) -> str:
    """The stored form of a valid address (Unicode domain); InvalidAddressError if invalid."""
    return parse(value).unicode


def is_valid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse(value)
    except InvalidAddressError:
        return False
    return True


def unicode_domain(address: str) -> str:
    """`jurgen@xn--exmple-cua.com` → `jurgen@exämple.com`, for display and comparison.

    An ASCII domain without A-labels is returned unchanged. Lenient: mail in the wild carries
    addresses we would refuse to send to, and those are kept as they are."""
    local, at, domain = address.rpartition("@")
    if not at or (domain.isascii() and "xn--" not in domain.lower()):
        return address
    try:
        return f"{local}@{idna.decode(domain, uts46=True)}"
    except (idna.IDNAError, UnicodeError):
        return address


def transport_form(address: str) -> tuple[str, bool]:
    """(what to put on the wire, whether it needs SMTPUTF8) for an address we send to.

    A valid address gets `Address.transport`; one that does not validate but is plain ASCII is
    passed through (the server judges it); a non-ASCII one that does not validate is sent as is
    and needs SMTPUTF8."""
    try:
        parsed = parse(address)
    except InvalidAddressError:
        return address, not address.isascii()
    return parsed.transport, parsed.needs_smtputf8
