"""The project's answer to a practitioner: the law of any sampling line in the
masked-diffusion regime, found from its declared law or by Monte Carlo, with a verdict
sized by power (`python -m mdmlib.audit module:function`), and the public sampling
lines (MDLM, SEDD, LLaDA, torch, MaskGIT) with their laws. May import: mdmlib.infra,
mdmlib.precision, mdmlib.stats, mdmlib.mdm.
"""
