// @ts-check
// The Electron main process: sign-in and tokens for the renderer over IPC. Run with `electron main.mjs`.
import { app, ipcMain, safeStorage, shell } from 'electron';
import { createAuth } from './auth.mjs';

const auth = await createAuth({
  app,
  safeStorage,
  openBrowser: (url) => shell.openExternal(url),
  clientId: process.env.MSAL_CLIENT_ID ?? '<your client id>',
});
ipcMain.handle('auth:sign-in', async () => (await auth.signIn())?.username ?? null);
ipcMain.handle('auth:token', () => auth.getToken());
ipcMain.handle('auth:sign-out', () => auth.signOut());
auth.onAccountsChanged(({ added, removed }) => {
  console.log(`accounts: +${added.map((a) => a.username).join(',')} -${removed.map((a) => a.username).join(',')}`);
});
