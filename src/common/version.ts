/** amqp-tunnel's version (package.json's; test/unit/discovery.test.ts checks that they agree). */
export const VERSION = '0.1.0';
