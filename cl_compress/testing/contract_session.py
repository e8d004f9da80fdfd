"""The test module ``pytest -p cl_compress.testing.contract --clc-strategy=NAME`` collects:
the contract for the strategies named on the command line."""

from cl_compress.testing.contract import ContractSuite


class TestContract(ContractSuite):
    cases = []  # from --clc-strategy (ContractSuite.resolved_cases)
