# trickle's Node server (HTTP + engine worker thread) as a container.
#
#   docker build -t trickle .
#   docker run -d -p 8787:8787 -v trickle-data:/app/data -e ADMIN_TOKEN=… trickle
#
# or `docker compose -f deploy/compose.yaml up -d`. The embedded database lives in the /app/data volume
# (DATABASE_URL=file:/app/data/trickle.db); set DATABASE_URL to a libsql:// or https:// URL for a remote one.

# --- build: compile src/ to dist/ (JavaScript + .d.ts) with tsc -------------------------------------------------
FROM node:20-slim AS build
WORKDIR /build
COPY package.json package-lock.json ./
# The compiler and the type packages are enough to build: no install scripts, and no optional platform binaries
# (the dev runtimes workerd, Deno and Bun, Biome).
RUN npm ci --no-audit --no-fund --ignore-scripts --omit=optional
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and the compiled code only; no TypeScript loader --------------------------
FROM node:20-slim
ENV NODE_ENV=production \
    PORT=8787 \
    DATABASE_URL=file:/app/data/trickle.db
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /build/dist ./dist
COPY LICENSE README.md ./
# The image's `node` user (uid 1000) owns the data directory; the volume inherits it when first created.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 8787
# /api/healthz answers 200 while it can read the migration state (migrating included), 503 when it cannot.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8787) + '/api/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) finishes the step in flight, releases the lease and exits 0.
STOPSIGNAL SIGTERM
CMD ["node", "dist/node.js"]
