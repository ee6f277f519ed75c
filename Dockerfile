# pr-council as a GitHub App: `pr-council serve` behind your HTTPS proxy (docs/github-app.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY agents ./agents
COPY bot ./bot
RUN python -m venv /opt/pr-council \
 && /opt/pr-council/bin/pip install --no-cache-dir .

FROM python:3.11-slim
# git is not needed: in App mode every file comes through the GitHub API.
RUN useradd --system --uid 10001 --home-dir /var/lib/pr-council --create-home pr-council
COPY --from=build /opt/pr-council /opt/pr-council
ENV PATH=/opt/pr-council/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PR_COUNCIL_STATE_DIR=/var/lib/pr-council
USER pr-council
WORKDIR /var/lib/pr-council
# The SQLite job journal lives here: mount a volume so queued reviews survive a restart.
VOLUME ["/var/lib/pr-council"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["pr-council", "serve", "--host", "0.0.0.0", "--port", "8000"]
