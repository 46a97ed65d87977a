/**
 * The client package's wall, as an esbuild plugin: it may import its own
 * `src/`, the wire contract (`packages/wire/`), Node's builtins and
 * google-auth-library (an optional peer, left external), and nothing else.
 * Any other import fails the build, naming the file that made it.
 */
import { builtinModules } from 'node:module';
import { relative, resolve } from 'node:path';

const builtins = new Set(builtinModules);
const PACKAGES = new Set(['google-auth-library']);

/** `root`: the repository; `client`: this package's folder. */
export function walls({ root, client }) {
  const allowed = [resolve(client, 'src'), resolve(root, 'packages/wire')];
  const refuse = (importer, what) => ({
    errors: [
      {
        text: `${relative(root, importer)} imports ${what}: the client package may import only packages/client/src, packages/wire, Node's builtins and google-auth-library`,
      },
    ],
  });
  return {
    name: 'client-walls',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        const spec = args.path;
        if (spec.startsWith('.') || spec.startsWith('/')) {
          const target = resolve(args.resolveDir, spec);
          if (allowed.some((d) => target === d || target.startsWith(`${d}/`))) return undefined;
          return refuse(args.importer, relative(root, target));
        }
        if (builtins.has(spec.startsWith('node:') ? spec.slice(5) : spec))
          return { path: spec, external: true };
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (PACKAGES.has(name)) return { path: spec, external: true };
        return refuse(args.importer, spec);
      });
    },
  };
}
