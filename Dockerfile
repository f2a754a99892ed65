# One image for every grace-moe process: `operator` (the default), `router` and `engine`.
# Build: docker build -t grace-moe:0.1.0 .

FROM node:20.19-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev

FROM node:20.19-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY data/traces ./data/traces
# The node user of the base image (uid and gid 1000), numeric so Kubernetes runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080 8470 8480
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["operator"]
