"""An import-linter contract type: modules that may use only listed outside packages.

`forbidden` contracts list what a module must not import; some rules are the other way
round ("the bundle reader uses numpy and the standard library only"). An
`allowed_externals` contract lists what the source modules, and every module of the
project they import directly or indirectly, may import from outside the project:

    [importlinter:contract:reader]
    name = the bundle reader uses numpy and the standard library only
    type = allowed_externals
    source_modules = segexplain.core.bundle.reader
    allowed_externals = numpy
    allow_stdlib = true

Imports anywhere in a module count, also those inside functions. Needs
`include_external_packages = True` in the [importlinter] section. Registered there with
`contract_types = allowed_externals: scripts.import_contracts.AllowedExternalsContract`
(lint-imports puts the working directory, the repository root, on the path).
"""

from __future__ import annotations

import sys
from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AllowedExternalsContract(Contract):
    """Source modules (and the project modules they reach) import only allowed packages."""

    type_name = "allowed_externals"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_externals = fields.ListField(subfield=fields.StringField(), required=False)
    allow_stdlib = fields.BooleanField(required=False, default=True)

    def _allowed(self, package: str) -> bool:
        if str(self.allow_stdlib).lower() == "true" and package in sys.stdlib_module_names:
            return True
        return package in set(self.allowed_externals or [])  # type: ignore[arg-type]

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        """Collect every disallowed outside import reachable from the source modules."""
        root = {m.split(".")[0] for m in graph.modules if not graph.is_module_squashed(m)}
        broken: list[dict[str, Any]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            if source not in graph.modules:
                raise ValueError(f"Module '{source}' does not exist.")
            reached = {source} | {m for m in graph.find_upstream_modules(source)
                                  if m.split(".")[0] in root}
            for module in sorted(reached):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    package = imported.split(".")[0]
                    if package in root or self._allowed(package):
                        continue
                    chain = graph.find_shortest_chain(importer=source, imported=module) or (
                        source,)
                    lines = [d["line_number"] for d in
                             graph.get_import_details(importer=module, imported=imported)]
                    broken.append({"source": source, "chain": list(chain),
                                   "imported": imported, "lines": lines})
        return ContractCheck(kept=not broken, warnings=None, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One line per disallowed import, with the chain of project modules that reach it."""
        allowed = ", ".join(sorted(self.allowed_externals or []))  # type: ignore[arg-type]
        stdlib = " and the standard library" if str(self.allow_stdlib).lower() == "true" else ""
        for item in check.metadata["broken"]:
            lines = ", ".join(f"l.{n}" for n in item["lines"])
            via = " -> ".join(item["chain"])
            output.print_error(f"{item['source']} may use only {allowed or 'nothing'}{stdlib}:",
                               bold=True)
            output.print_error(f"-   {via} -> {item['imported']} ({lines})", bold=False)
            output.new_line()
