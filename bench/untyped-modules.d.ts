// benchmark.js's dependencies, imported only to hand them to it (harness.ts); no types installed
declare module 'lodash';
declare module 'platform';
