"""The standard HL7 v2 segment ids (v2.2-v2.8), to tell unknown or glued-on segments from real ones."""

from __future__ import annotations

import re

_IDS = """
ABS ACC ADD ADJ AFF AIG AIL AIP AIS AL1 APR ARQ ARV AUT BHS BLC BLG BPO BPX BTS BTX BUI CDM CDO
CER CM0 CM1 CM2 CNS CON CSP CSR CSS CTD CTI CTR DB1 DG1 DMI DON DRG DSC DSP ECD ECR EDU EQL EQP
EQU ERQ ERR EVN FAC FHS FT1 FTS GOL GP1 GP2 GT1 IAM IAR IIM ILT IN1 IN2 IN3 INV IPC IPR ISD ITM
IVC IVT LAN LCC LCH LDP LOC LRL MCP MFA MFE MFI MRG MSA MSH NCK NDS NK1 NPU NSC NST NTE OBR OBX
ODS ODT OM1 OM2 OM3 OM4 OM5 OM6 OM7 ORC ORG OVR PAC PCE PCR PD1 PDA PDC PEO PES PID PKG PMT PR1
PRA PRB PRC PRD PRT PSG PSH PSL PSS PTH PV1 PV2 PYE QAK QID QPD QRD QRF QRI RCP RDF RDT REL RF1
RFI RGS RMI ROL RQ1 RQD RXA RXC RXD RXE RXG RXO RXR RXV SAC SCD SCH SCP SDD SFT SGH SGT SHP SID
SLT SPM SPR STF STZ TCC TCD TQ1 TQ2 TXA UAC UB1 UB2 URD URS VAR VND VTQ
"""
KNOWN_SEGMENTS: frozenset[str] = frozenset(_IDS.split())

_VALID_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


def is_valid_id(seg_id: str) -> bool:
    """True for a well-formed segment id: three characters, an upper-case letter then letters/digits."""
    return _VALID_ID.fullmatch(seg_id) is not None


def is_known(seg_id: str) -> bool:
    """True for a standard segment id or a site-defined Z segment."""
    return seg_id in KNOWN_SEGMENTS or (seg_id[:1] == "Z" and is_valid_id(seg_id))
