"""Name and label checks, with apimachinery's exact messages.

Note the double spaces in ``'my-name',  or '123-abc'``: Go's ``RegexError`` writes them, and real
clusters print them.
"""

from __future__ import annotations

import pytest

from pilothouse.machinery.validation.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns_subdomain,
)

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                 "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                 "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                 "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                 "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


@pytest.mark.parametrize("value", ["a", "web", "web-0", "example.com", "a.b-c.d", "0", "x" * 253])
def test_valid_subdomains(value: str) -> None:
    assert is_dns1123_subdomain(value) == []


def test_invalid_subdomain_message_is_exact() -> None:
    assert is_dns1123_subdomain("Web") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("-a") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a..b") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_dns_label() -> None:
    assert is_dns1123_label("default") == []
    assert is_dns1123_label("kube-system") == []
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("Default") == [LABEL_MSG]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1035_label("1abc")[0].startswith("a DNS-1035 label must consist of lower case")
    assert is_dns1035_label("abc-1") == []


def test_qualified_names() -> None:
    for ok in ("app", "App_Name.v1", "example.com/app", "kubernetes.io/os", "a/b"):
        assert is_qualified_name(ok) == [], ok
    assert is_qualified_name("-app") == [QUALIFIED_MSG]
    assert is_qualified_name("/app") == ["prefix part must be non-empty"]
    assert is_qualified_name("Example.com/app") == ["prefix part " + SUBDOMAIN_MSG]
    assert is_qualified_name("example.com/") == ["name part must be non-empty", QUALIFIED_MSG]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]
    too_many = is_qualified_name("a/b/c")
    assert len(too_many) == 1
    assert too_many[0].startswith("a qualified name must consist of alphanumeric characters")
    assert too_many[0].endswith("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")


def test_label_values() -> None:
    assert is_valid_label_value("") == []
    assert is_valid_label_value("v1.2_3-x") == []
    errors = is_valid_label_value("bad value")
    assert errors == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
        "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
    assert is_valid_label_value("a" * 64)[0] == "must be no more than 63 characters"


def test_generate_name_prefix_may_end_with_a_dash() -> None:
    assert name_is_dns_subdomain("web-", True) == []
    assert name_is_dns_subdomain("web-", False) == [SUBDOMAIN_MSG]
