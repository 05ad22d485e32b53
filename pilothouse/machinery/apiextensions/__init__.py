"""The pure machinery of custom resources (apiextensions.k8s.io), without I/O.

What kube-apiserver's apiextensions-apiserver does to a CRD's schema and to the custom resources
it describes, one module per step:

- :func:`validate_crd_schema` (``crdschema``, ``structural``): the structural-schema and keyword rules a CRD
  version's ``openAPIV3Schema`` must follow, with Kubernetes' paths and messages;
- :func:`validate_instance` (``instance``): OpenAPI v3 validation of a custom resource,
  embedded resources and list-type set/map uniqueness included;
- :func:`apply_defaults` (``defaulting``) and :func:`prune` (``pruning``): structural defaulting
  and the dropping of unknown fields (whose paths ``fieldValidation`` reports);
- :func:`validate_rules` (``rules``): ``x-kubernetes-validations`` CEL rules;
- :func:`compile_schema` (``compiled``): a CRD version's schema compiled once into closures for
  validity, pruning and defaulting, which the custom resource rows use per request (the
  functions above stay the reference, and word every error);
- :func:`validate_custom_resource` (``customresource``): both, in the strategy's order, rules
  skipped after blocking errors, ratcheting on update;
- :func:`printer_columns` (``columns``): server-side Table columns and cells, and
  :func:`validate_printer_columns`, the CRD checks of ``additionalPrinterColumns``;
- :func:`validate_selectable_fields` (``selectable``): the CRD checks of ``selectableFields``;
- :func:`openapi_schema` (``openapi``): the published OpenAPI v3 component schema, and
  :func:`typed_schema`, the same with ``#/$defs/`` references for patch and apply typing, and
  :func:`openapi_v2_schema`, the Swagger 2.0 definition.
"""

from __future__ import annotations

from pilothouse.machinery.apiextensions.columns import InvalidColumnPath, printer_columns, validate_printer_columns
from pilothouse.machinery.apiextensions.compiled import CompiledSchema, compile_schema
from pilothouse.machinery.apiextensions.crdschema import validate_crd_schema
from pilothouse.machinery.apiextensions.customresource import validate_custom_resource
from pilothouse.machinery.apiextensions.defaulting import apply_defaults
from pilothouse.machinery.apiextensions.instance import validate_instance
from pilothouse.machinery.apiextensions.openapi import (
    definition_name,
    list_definition_name,
    openapi_list_schema,
    openapi_schema,
    openapi_v2_schema,
    typed_schema,
)
from pilothouse.machinery.apiextensions.pruning import prune
from pilothouse.machinery.apiextensions.rules import validate_rules
from pilothouse.machinery.apiextensions.selectable import validate_selectable_fields

__all__ = [
    "CompiledSchema",
    "InvalidColumnPath",
    "apply_defaults",
    "compile_schema",
    "definition_name",
    "list_definition_name",
    "openapi_list_schema",
    "openapi_schema",
    "openapi_v2_schema",
    "printer_columns",
    "prune",
    "typed_schema",
    "validate_crd_schema",
    "validate_custom_resource",
    "validate_instance",
    "validate_printer_columns",
    "validate_rules",
    "validate_selectable_fields",
]
