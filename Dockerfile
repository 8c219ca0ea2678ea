# dmp-xds: slim Python image, non-root, configured by environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DMP_XDS_LISTEN=0.0.0.0:8080 \
    DMP_XDS_DATA_DIR=/var/lib/dmp-xds

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY wsdl ./wsdl
COPY schemas ./schemas
COPY migrations ./migrations
RUN pip install . && rm -rf /src

RUN useradd --system --create-home --home-dir /var/lib/dmp-xds --shell /usr/sbin/nologin dmpxds
USER dmpxds
WORKDIR /var/lib/dmp-xds
VOLUME ["/var/lib/dmp-xds"]
EXPOSE 8080

ENTRYPOINT ["dmp-xds"]
CMD ["serve"]
