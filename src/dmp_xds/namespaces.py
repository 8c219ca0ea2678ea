"""XML namespaces used across the layers (one place, so every module spells them alike)."""

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XOP = "http://www.w3.org/2004/08/xop/include"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
RMD = "urn:ihe:iti:rmd:2017"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
HL7V3 = "urn:hl7-org:v3"

NSMAP = {
    "rim": RIM,
    "rs": RS,
    "lcm": LCM,
    "query": QUERY,
    "xdsb": XDSB,
    "wsa": WSA,
    "xop": XOP,
}
